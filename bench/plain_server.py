"""The baseline of ``bench/serving.py``: the same ``Predictor`` behind a plain FastAPI app in one
uvicorn process, no Ray. It parses bodies with the served app's ``parse_predict_body`` and
runs one prediction at a time in a worker thread (what a hand-written server would do), so the
difference to ``profner serve`` is what Ray Serve's proxy, router and batching cost or gain.

    .venv/bin/python bench/plain_server.py MODEL_DIR PORT
"""

from __future__ import annotations

import asyncio
import sys

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from profner_models.predict import Predictor
from serve.schemas import Limits, RequestError, parse_predict_body


def build(model_dir: str) -> FastAPI:
    """The app: ``POST /predict`` and ``GET /health`` as ``profner serve`` answers them."""
    predictor = Predictor(model_dir)
    limits = Limits()
    one_at_a_time = asyncio.Lock()
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            texts = parse_predict_body(await request.body(), limits)
        except RequestError as error:
            return JSONResponse({"detail": error.message}, status_code=error.status)
        async with one_at_a_time:
            predictions = await asyncio.to_thread(predictor.predict, texts)
        return JSONResponse({"predictions": [p.to_dict() for p in predictions]})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ready"}

    return app


if __name__ == "__main__":
    torch.set_num_threads(1)  # as a 1-CPU Serve replica runs
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
