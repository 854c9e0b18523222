"""The Ray Serve deployment: a FastAPI ingress around one ``Predictor`` with dynamic batching.

Every text of every request goes through ``ProfnerDetector._predict_batch`` (``@serve.batch``),
so texts of concurrent requests share model calls: up to ``max_batch_size`` texts, waiting at
most ``batch_wait_ms`` for a batch to fill. The model runs in a worker thread, one batch at a
time, which keeps the event loop free to parse and queue the next requests (and answer
``/health``) meanwhile. Answers are ``Prediction.to_dict()`` of the same ``Predictor`` that
``profner predict`` uses, so both give the same answer for the same text.

``build_app`` is the import-path app builder for ``serve run`` / ``serve deploy``
(``serve/serve_config.yaml``); ``profner serve`` (``serve/cli.py``) calls it too.
"""

# No `from __future__ import annotations`: Serve pickles the class by value, and FastAPI must
# see the endpoint annotations (`request: Request`) as objects, not as names to look up.
import asyncio
import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from profner_models import __version__
from serve.resolve import resolve
from serve.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    RequestError,
    ServeSettings,
    body_too_large,
    parse_predict_body,
)

APP_NAME = "profner"
logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="profner-hpo occupation detector",
    version=__version__,
    description=(
        "Finds mentions of professions and occupations in Spanish text (ProfNER tweets, "
        "MEDDOPROF clinical cases). Offsets are characters of the text as sent, end "
        "exclusive. Errors: 400 unreadable JSON, 413 a size limit, 422 wrong shape or an "
        "empty/whitespace-only text; the body is `{\"detail\": message}`."
    ),
)

_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "the body is not JSON (empty, not UTF-8, malformed, nested too deeply)",
    413: "over a size limit (body bytes, max_texts, max_chars); the message names it",
    422: "wrong shape or types, empty list, empty/whitespace-only text",
    500: "the model failed on a text (a bug: the server stays up)",
}.items()}


async def _read_body(request: Request, limit: int) -> tuple[bytes, int]:
    """(body, its size); past ``limit`` bytes the rest is read and dropped, so memory stays
    bounded and the client, still sending, gets its 413 answer instead of a reset."""
    chunks, size = [], 0
    async for chunk in request.stream():
        if size + len(chunk) <= limit:
            chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), size


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _model_info(settings: ServeSettings, model_dir: Path, source: dict[str, Any]) -> ModelInfo:
    import fastapi
    import ray
    import torch

    config = _read_json(model_dir / "config.json")
    meta = _read_json(model_dir / "meta.json")
    return ModelInfo(
        ref=source.get("ref", settings.model),
        model_dir=str(model_dir),
        source=source,
        task=config.get("task"),
        config=config,
        metrics=meta.get("metrics") or {},
        meta=meta,
        limits=settings.limits.model_dump(),
        batching={"max_batch_size": settings.max_batch_size,
                  "batch_wait_ms": settings.batch_wait_ms},
        versions={"profner_hpo": __version__, "ray": ray.__version__, "torch": torch.__version__,
                  "fastapi": fastapi.__version__, "python": platform.python_version()},
    )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


# Serve pickles the class when it is decorated: whatever it uses must be defined above it.
@serve.deployment(name="ProfnerDetector")
@serve.ingress(api)
class ProfnerDetector:
    def __init__(self, settings: dict[str, Any]) -> None:
        from profner_models.predict import Predictor  # torch: import in the replica only

        self._settings = ServeSettings.model_validate(settings)
        resolved = resolve(self._settings.model, self._settings.tracking_uri)
        self._model_dir = resolved.model_dir
        device = "cuda" if self._settings.num_gpus > 0 else "cpu"
        self._predictor = Predictor(resolved.model_dir, batch_size=self._settings.max_batch_size,
                                    device=device)
        self._limits = self._settings.limits
        self._info = _model_info(self._settings, resolved.model_dir,
                                 self._settings.source or resolved.source)
        self._info.device = str(self._predictor.device)
        self._predict_batch.set_max_batch_size(self._settings.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(self._settings.batch_wait_ms / 1000)
        self._started = time.monotonic()

    @api.post(
        "/predict",
        response_model=PredictResponse,  # the documented shape; answers are sent as built
        responses=_ERRORS,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()}}}},
    )
    async def predict(self, request: Request) -> Any:
        """Label and entities for each text of ``{"texts": [...]}`` or ``{"text": "..."}``."""
        body, size = await _read_body(request, self._limits.max_body_bytes)
        try:
            if size > self._limits.max_body_bytes:
                raise body_too_large(size, self._limits)
            texts = parse_predict_body(body, self._limits)
        except RequestError as error:
            return _error(error.status, error.message)
        results = await asyncio.gather(*(self._predict_batch(text) for text in texts))
        for index, result in enumerate(results):
            if isinstance(result, Exception):
                return _error(500, f"prediction failed on text {index}: "
                                   f"{type(result).__name__}: {result}")
        return JSONResponse({"predictions": results})  # Prediction.to_dict(), untouched

    @api.get("/health", response_model=Health)
    async def health(self) -> Health:
        """Answers once this replica has loaded the model (before that, Serve answers 503)."""
        return Health(status="ready", model_dir=str(self._model_dir),
                      uptime_s=round(time.monotonic() - self._started, 3))

    @api.get("/model", response_model=ModelInfo)
    async def model(self) -> ModelInfo:
        """The served model: reference, dir, provenance, config, metrics, meta, versions."""
        return self._info

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _predict_batch(self, texts: list[str]) -> list[dict | Exception]:
        return await asyncio.to_thread(self._predict_isolated, texts)

    def _predict_isolated(self, texts: list[str]) -> list[dict | Exception]:
        """``to_dict()`` per text; when the batch fails, each text alone, so one bad text
        fails only its own request and not the others batched with it."""
        try:
            return [p.to_dict() for p in self._predictor.predict(texts)]
        except Exception as error:  # noqa: BLE001 - reported per text below
            if len(texts) == 1:
                logger.exception("prediction failed")
                return [error]
        return [self._predict_isolated([text])[0] for text in texts]


def build_app(args: dict[str, Any] | ServeSettings) -> Application:
    """Import-path app builder: ``serve run serve.app:build_app model=<model dir>``."""
    settings = ServeSettings.model_validate(args)
    ongoing = settings.max_ongoing_requests or max(64, 4 * settings.max_batch_size)
    return ProfnerDetector.options(
        num_replicas=settings.replicas,
        max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus},
    ).bind(settings.model_dump())
