"""The Ray Serve deployment: a FastAPI ingress around one ``Predictor`` with dynamic batching.

Every text of every request goes to a lane (``serve.lanes.Lane``): texts up to
``long_text_chars`` to the batches lane, so texts of concurrent requests share model calls (up
to ``max_batch_size`` texts; a call takes what queued up while the previous one ran, waiting
``batch_wait_ms`` more when set, so by default a lone request never waits), longer ones one at
a time to a lane of their own, so they never hold up the tweets. The batches lane runs the
model on the event loop itself (a batch of short texts takes milliseconds; a hand-off to a
thread cost more than it overlapped), the long lane on a worker thread of its own, so the loop
keeps answering ``/health`` and queueing tweets while a long text runs; tokenisation is linear
in the text (``profner_models.text.tokenize``), so no in-limits text holds the GIL for long. A
request that is not answered within ``request_timeout_s`` gets a 504 (its batch finishes in the
background). Answers are ``Prediction.to_dict()`` of the same ``Predictor`` that ``profner
predict`` uses, so both give the same answer for the same text.

Every answer of ours is JSON, errors too (``{"detail": message}``, also for an unexpected
exception). ``/openapi.json`` is built per replica with its live limits (``request_schema``).
Each ``/predict`` answer has a ``Server-Timing`` header (``parse``, ``wait`` in the batch queue,
``model``, ``replica`` total, in ms): ``bench/serving.py`` subtracts it from the client's latency
to show what the proxy and the hops to the replica cost.

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
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.serve import Application

from profner_models import __version__
from serve.lanes import Lane
from serve.resolve import resolve
from serve.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    PredictResponse,
    RequestError,
    ServeSettings,
    body_too_large,
    parse_predict_body,
    request_schema,
)

APP_NAME = "profner"
log = logging.getLogger("ray.serve")

TITLE = "profner-hpo occupation detector"
DESCRIPTION = (
    "Finds mentions of professions and occupations in Spanish text (ProfNER tweets, "
    "MEDDOPROF clinical cases). Offsets are characters of the text as sent, end "
    "exclusive. Errors: 400 unreadable JSON, 413 a size limit, 422 wrong shape or a text "
    "with no content, 504 over the time budget; the body is `{\"detail\": message}`."
)
# The schema and docs routes are ours (below): the schema carries the replica's live limits.
api = FastAPI(title=TITLE, version=__version__, description=DESCRIPTION,
              openapi_url=None, docs_url=None, redoc_url=None)


@api.exception_handler(Exception)
async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    """A bug answers JSON like every other error (Starlette's default is plain text)."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": f"internal error: {type(error).__name__}"}, status_code=500)

_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "the body is not JSON (empty, not UTF-8, malformed, nested too deeply)",
    413: "over a size limit (body bytes, max_texts, max_chars); the message names it",
    422: "wrong shape or types, empty list, a text with no content (only whitespace, control "
         "or invisible characters)",
    500: "the model failed on a text (a bug: the server stays up)",
    504: "not answered within the time budget (request_timeout_s)",
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


def _model_info(settings: ServeSettings, model_dir: Path, source: dict[str, Any],
                config: dict[str, Any]) -> ModelInfo:
    """``config``: the model's (an ensemble's first member's: the task and data all share)."""
    import fastapi
    import ray
    import torch

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


def _keep_replica_grpc_on_loopback() -> None:
    """Ray Serve 2.60 starts each replica's inter-deployment gRPC server on ``[::]:0``, every
    interface, whatever the node's address (``ray/serve/_private/replica.py``). On a local
    instance (Ray's local-only mode, see ``profner_ray``) bind it to 127.0.0.1 like the rest;
    called in the replica before Serve starts that server. A Ray without the hook is left as is
    (``tests/test_serve_hostile.py`` checks the listeners)."""
    from ray._private import ray_constants
    from ray.serve._private import replica

    original = getattr(replica, "add_port_to_grpc_server", None)
    if ray_constants.ENABLE_RAY_CLUSTER or original is None or getattr(original, "loopback", False):
        return

    def on_loopback(server: Any, address: str) -> int:
        return original(server, "127.0.0.1:0" if address == "[::]:0" else address)

    on_loopback.loopback = True
    replica.add_port_to_grpc_server = on_loopback


# Serve pickles the class when it is decorated: whatever it uses must be defined above it.
@serve.deployment(name="ProfnerDetector")
@serve.ingress(api)
class ProfnerDetector:
    def __init__(self, settings: dict[str, Any]) -> None:
        from profner_models.predict import Predictor  # torch: import in the replica only

        _keep_replica_grpc_on_loopback()
        self._settings = ServeSettings.model_validate(settings)
        resolved = resolve(self._settings.model, self._settings.tracking_uri)
        self._model_dir = resolved.model_dir
        device = "cuda" if self._settings.num_gpus > 0 else "cpu"
        self._predictor = Predictor(resolved.model_dir, batch_size=self._settings.max_batch_size,
                                    device=device)
        self._limits = self._settings.limits
        self._info = _model_info(self._settings, resolved.model_dir,
                                 self._settings.source or resolved.source,
                                 self._predictor.model.config)
        self._info.device = str(self._predictor.device)
        self._started = time.monotonic()
        self._openapi: dict[str, Any] | None = None
        self._batches = Lane(self._predict_isolated, self._settings.max_batch_size,
                             self._settings.batch_wait_ms / 1000, "batches", inline=True)
        self._long = Lane(self._predict_isolated, 1, name="long")

    @api.post("/predict", response_model=PredictResponse, responses=_ERRORS)
    async def predict(self, request: Request) -> Any:
        """Label and entities for each text of ``{"texts": [...]}`` or ``{"text": "..."}``."""
        started = time.perf_counter()
        body, size = await _read_body(request, self._limits.max_body_bytes)
        try:
            if size > self._limits.max_body_bytes:
                raise body_too_large(size, self._limits)
            texts = parse_predict_body(body, self._limits)
        except RequestError as error:
            return _error(error.status, error.message)
        parsed = time.perf_counter()
        budget = self._settings.request_timeout_s
        long_text = self._settings.long_text_chars
        lanes = [self._batches if len(text) <= long_text else self._long for text in texts]
        try:
            async with asyncio.timeout(budget):  # no task of its own, unlike wait_for
                answers = ([await lanes[0].submit(texts[0])] if len(texts) == 1 else
                           await asyncio.gather(*map(Lane.submit, lanes, texts)))
        except TimeoutError:
            return _error(504, f"not answered within request_timeout_s={budget:g} s "
                               f"({len(texts)} texts, {sum(map(len, texts))} characters)")
        for index, (result, _batch_start, _model_s) in enumerate(answers):
            if isinstance(result, Exception):
                return _error(500, f"prediction failed on text {index}: "
                                   f"{type(result).__name__}: {result}")
        done = time.perf_counter()
        timing = {"parse": parsed - started,
                  "wait": max(batch_start for _, batch_start, _ in answers) - parsed,
                  "model": max(model_s for _, _, model_s in answers),
                  "replica": done - started}
        return JSONResponse(  # Prediction.to_dict(), untouched
            {"predictions": [result for result, _, _ in answers]},
            headers={"Server-Timing": ", ".join(f"{name};dur={1000 * seconds:.2f}"
                                                for name, seconds in timing.items())})

    @api.get("/health", response_model=Health)
    async def health(self) -> Health:
        """Answers once this replica has loaded the model (before that, Serve answers 503)."""
        return Health(status="ready", model_dir=str(self._model_dir),
                      uptime_s=round(time.monotonic() - self._started, 3))

    @api.get("/model", response_model=ModelInfo)
    async def model(self) -> ModelInfo:
        """The served model: reference, dir, provenance, config, metrics, meta, versions."""
        return self._info

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> JSONResponse:
        """The OpenAPI schema, the request body with this replica's limits."""
        if self._openapi is None:
            spec = get_openapi(title=TITLE, version=__version__, description=DESCRIPTION,
                               routes=request.app.routes)
            spec["paths"]["/predict"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": request_schema(self._limits)}}}
            self._openapi = spec
        return JSONResponse(self._openapi)

    @api.get("/docs", include_in_schema=False)
    async def docs(self) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} - docs")

    def _predict_isolated(self, texts: list[str]) -> list[dict | Exception]:
        """``to_dict()`` per text; when the batch fails, each text alone, so one bad text
        fails only its own request and not the others batched with it."""
        try:
            return [p.to_dict() for p in self._predictor.predict(texts)]
        except Exception as error:  # noqa: BLE001 - reported per text below
            if len(texts) == 1:
                log.exception("prediction failed")
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
        logging_config={"enable_access_log": settings.access_log},
    ).bind(settings.model_dump())
