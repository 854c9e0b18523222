"""What the server accepts and answers, and how a ``POST /predict`` body is checked.

Checks run in this order; the first failure answers, with ``{"detail": "<message>"}``:

1. 413 Content Too Large: the body is bigger than any body within the text limits could be
   (``Limits.max_body_bytes``).
2. 400 Bad Request: the body cannot be read as JSON -- empty, not UTF-8, malformed, nested too
   deeply for the parser.
3. 422 Unprocessable Content: valid JSON of the wrong shape -- not an object, neither or both of
   ``text``/``texts``, unknown fields, wrong types (no coercion: ``1`` is not a text), an empty
   list, a non-string item.
4. 413 Content Too Large: more than ``max_texts`` texts, or a text over ``max_chars``
   characters. The message names the limit and its value. All size limits answer 413; 422
   is for content.
5. 422 Unprocessable Content: a text with no content -- empty, or only whitespace, control
   and invisible format characters (a zero-width space, a BOM, a NUL: there is nothing to tag,
   so we refuse it rather than invent a probability) -- or one holding an unpaired UTF-16
   surrogate (``"\\ud800"`` parses as JSON but is not Unicode text).

The OpenAPI schema of the body (``request_schema``) says the same: exactly one of ``text`` /
``texts``, at most ``max_texts`` texts of 1 to ``max_chars`` characters, each matching
``CONTENT`` -- so every request the schema allows is accepted, and each refusal above breaks it.
Characters are Python ``str`` characters (code points), the unit of the answer's offsets.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

# A character that is content: not whitespace (ASCII, NBSP, Unicode spaces, line/paragraph
# separators), not a C0/C1 control, not an invisible format character (soft hyphen, zero-width
# and direction marks, word joiner, bidi isolates, BOM, interlinear annotation marks). One
# pattern, searched for (unanchored), by the server and in the OpenAPI schema alike; BMP escapes
# only, so JSON Schema (ECMA-262) and Python's ``re`` read it the same.
CONTENT = ("[^\\u0000-\\u0020\\u007f-\\u00a0\\u00ad\\u1680\\u180e\\u2000-\\u200f"
           "\\u2028-\\u202f\\u205f-\\u206f\\u3000\\ufeff\\ufff9-\\ufffb]")
_CONTENT = re.compile(CONTENT)


class RequestError(Exception):
    """A refused request: the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Limits(BaseModel):
    """Per-request size limits (``profner serve --max-texts/--max-chars``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_texts: int = Field(64, ge=1, description="most texts in one request")
    max_chars: int = Field(10_000, ge=1, description="most characters in one text")

    @property
    def max_body_bytes(self) -> int:
        """Bytes a body within both limits can take: every character JSON-escaped as a
        12-byte surrogate pair (``\\ud83d\\ude00``), plus quotes, commas and some slack."""
        return self.max_texts * (12 * self.max_chars + 8) + 4096


class PredictRequest(BaseModel):
    """``{"texts": [...]}`` or ``{"text": "..."}``: exactly one of the two."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [
            {"texts": ["Soy enfermera en el hospital 🏥", "Hoy llueve en Madrid"]},
            {"text": "El camionero que me adelantó iba a 140"},
        ]},
    )

    text: str | None = Field(None, description="one text")
    texts: list[str] | None = Field(None, min_length=1, description="one or more texts")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PredictRequest":
        if (self.text is None) == (self.texts is None):
            raise PydanticCustomError(
                "one_of", "send exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self

    def items(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Entity(BaseModel):
    """One mention; ``start``/``end`` are character offsets into the text as sent (end
    exclusive), so ``text[start:end] == entity.text``. ``class``/``code``: MEDDOPROF only."""

    model_config = ConfigDict(populate_by_name=True)

    start: int
    end: int
    type: str
    text: str
    class_: str | None = Field(None, alias="class")
    code: str | None = None


class Prediction(BaseModel):
    label: int = Field(description="7a: 1 when the text mentions an occupation")
    probability: float = Field(description="the classifier head's probability of label 1")
    entities: list[Entity]


class PredictResponse(BaseModel):
    """One prediction per text, in request order (a single ``text`` gives a list of one)."""

    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str = Field(description="'ready' once the replica has loaded the model")
    model_dir: str
    uptime_s: float


class ModelInfo(BaseModel):
    """Where the served model came from and what it is (config, metrics from meta.json)."""

    ref: str = Field(description="the reference given to `profner serve`")
    model_dir: str
    source: dict[str, Any] = Field(description="kind (dir | mlflow-run | mlflow-model), run id, ...")
    task: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    limits: dict[str, int]
    batching: dict[str, float]
    versions: dict[str, str]
    device: str = Field("cpu", description="where the replica predicts (cuda with --num-gpus)")


def parse_predict_body(body: bytes, limits: Limits) -> list[str]:
    """The texts of a ``POST /predict`` body, or ``RequestError`` (see the module doc)."""
    if len(body) > limits.max_body_bytes:
        raise body_too_large(len(body), limits)
    if not body.strip():
        raise RequestError(400, 'request body is empty; send JSON {"texts": ["..."]}')
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"request body is not valid UTF-8 (byte 0x{body[error.start]:02x} "
                                f"at offset {error.start})") from None
    try:
        value = json.loads(decoded)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"malformed JSON at line {error.lineno} column {error.colno}: "
                                f"{error.msg}") from None
    except RecursionError:
        raise RequestError(400, "JSON nested too deeply to parse") from None
    if not isinstance(value, dict):
        raise RequestError(422, f"request body must be a JSON object like "
                                f'{{"texts": ["..."]}}, not {_json_type(value)}')
    try:
        request = PredictRequest.model_validate(value)
    except ValidationError as error:
        raise RequestError(422, _describe(error)) from None
    texts = request.items()
    names = ["text"] if request.text is not None else [f"texts[{i}]" for i in range(len(texts))]
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is "
                                f"max_texts={limits.max_texts}")
    for name, text in zip(names, texts):
        if len(text) > limits.max_chars:
            raise RequestError(413, f"{name} has {len(text)} characters; the limit is "
                                    f"max_chars={limits.max_chars}")
    for name, text in zip(names, texts):
        _check_content(name, text)
    return texts


def request_schema(limits: Limits) -> dict[str, Any]:
    """The JSON Schema of a ``POST /predict`` body the server accepts, with these limits."""
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_chars, "pattern": CONTENT,
            "description": f"1 to {limits.max_chars} characters, not only whitespace, control "
                           f"or invisible characters"}
    return {
        "title": "PredictRequest",
        "description": PredictRequest.__doc__,
        "oneOf": [
            {"title": "one text", "type": "object", "properties": {"text": text},
             "required": ["text"], "additionalProperties": False},
            {"title": "several texts", "type": "object", "required": ["texts"],
             "additionalProperties": False,
             "properties": {"texts": {"type": "array", "items": text, "minItems": 1,
                                      "maxItems": limits.max_texts}}},
        ],
        "examples": PredictRequest.model_config["json_schema_extra"]["examples"],
    }


def body_too_large(size: int, limits: Limits) -> RequestError:
    return RequestError(413, f"request body is {size} bytes; the limit is {limits.max_body_bytes}"
                             f" bytes (from max_texts={limits.max_texts} and "
                             f"max_chars={limits.max_chars})")


def _check_content(name: str, text: str) -> None:
    if not _CONTENT.search(text):
        raise RequestError(422, f"{name} has no content (it is empty, or only whitespace, "
                                f"control or invisible characters)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RequestError(422, f"{name} holds an unpaired surrogate "
                                f"U+{ord(text[error.start]):04X} at character {error.start}; "
                                f"send valid Unicode") from None


def _describe(error: ValidationError, most: int = 5) -> str:
    """Pydantic's errors as one line naming each field, without echoing the input back."""
    parts = []
    for item in error.errors(include_input=False, include_url=False)[:most]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        where = where if len(where) <= 60 else where[:57] + "..."
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field (send 'text' or 'texts')"
        parts.append(f"{where}: {message}" if where else message)
    more = error.error_count() - most
    return "; ".join(parts) + (f"; and {more} more errors" if more > 0 else "")


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class ServeSettings(BaseModel):
    """The app builder's arguments (``serve.app:build_app``; ``profner serve`` options)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="model dir, runs:/<run_id>/<path> or models:/<name>/<version>")
    source: dict[str, Any] | None = Field(
        None, description="provenance already found by resolve() (profner serve passes it); "
                          "None: the replica resolves `model` itself")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI for runs:/ models:/")
    max_texts: int = Field(64, ge=1, description="most texts per request (more: 413)")
    max_chars: int = Field(10_000, ge=1, description="most characters per text (more: 413)")
    max_batch_size: int = Field(32, ge=1, description="most texts per model call across "
                                                      "concurrent requests (1: no batching)")
    batch_wait_ms: float = Field(
        0.0, ge=0, description="how long a batch waits for more texts (0: it takes what queued "
                               "up while the previous one ran, so a lone request never waits)")
    request_timeout_s: float = Field(
        30.0, gt=0, description="time budget of one request; over it: 504")
    long_text_chars: int = Field(
        1000, ge=1, description="texts longer than this are predicted one at a time on a lane "
                                "of their own, so they never hold up the short texts batched "
                                "together")
    replicas: int = Field(1, ge=1, description="model replicas (one answers HTTP itself; "
                                               "several share the port through Serve's proxy)")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per replica")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (> 0: predict on cuda)")
    max_ongoing_requests: int | None = Field(
        None, ge=1, description="requests a replica takes at once; default max(64, 4 x batch)")
    access_log: bool = Field(
        False, description="a line per request in the replica's Serve log (off: on 2 cores "
                           "writing it cost a quarter of the requests a second)")

    @property
    def limits(self) -> Limits:
        return Limits(max_texts=self.max_texts, max_chars=self.max_chars)
