"""MEDDOPROF NORM: map an occupation mention to an ESCO or SNOMED CT code.

The TALP MEDDOPROF 2021 approach: a sentence-transformers model embeds

- every valid code's descriptions (its label, split on ``/`` into its gendered forms, and each
  alternative label),
- every training mention with its gold code,
- one centroid per code over that code's training mentions,

each text set inside context templates ("Trabaja de X.", "Se dedica a X.") and averaged over
them. A mention gets the code voted by its ``k`` nearest rows (cosine). Before the kNN step a
string lookup answers mentions that match a training mention or a code description after
lower-casing, accent folding and (optionally) stripping Spanish plural/gender endings.

Only codes from the valid-code list are ever emitted: training rows whose code is not valid are
left out of the index (and counted).

The index is built once and saved as ``embeddings.safetensors`` + ``index.json`` (no pickle);
``NormIndex.load`` reads it back and re-creates the encoder from the saved model name/path.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Protocol, Sequence

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, field_validator
from safetensors.numpy import load_file, save_file

from profner_models.config import ConfigError, Schema, check, describe
from profner_models.pretrained import resolve
from profner_models.progress import quiet_transformers

DEFAULT_MODEL = "sentence-transformers/distiluse-base-multilingual-cased-v2"
DEFAULT_TEMPLATES = ("Trabaja de {}.", "Se dedica a {}.")
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
KINDS = ("description", "mention", "centroid")


class Encoder(Protocol):
    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray: ...


class NormConfig(Schema):
    """How the index is built and queried (the ``norm`` block of a MEDDOPROF config)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = DEFAULT_MODEL
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    k: int = Field(5, ge=1)
    vote: Literal["weighted", "majority"] = "weighted"
    """weighted: sum of cosines; majority: count, cosine breaks ties."""
    kinds: tuple[Literal["description", "mention", "centroid"], ...] = Field(KINDS, min_length=1)
    """Which rows the kNN step sees."""
    string_match: bool = True
    """Exact match after folding, before kNN."""
    fold_accents: bool = True
    strip_endings: bool = True
    """Plural/gender-insensitive string keys."""
    batch_size: int = Field(64, ge=1)

    def __init__(self, **settings) -> None:
        try:
            super().__init__(**settings)
        except ValidationError as error:
            raise ConfigError(describe(error, type(self), "norm")) from None

    @field_validator("templates")
    @classmethod
    def _one_slot(cls, templates: tuple[str, ...]) -> tuple[str, ...]:
        for template in templates:
            if template.count("{}") != 1:
                raise ValueError(f"norm template {template!r} must hold exactly one '{{}}'")
        return templates

    @classmethod
    def from_dict(cls, block: Mapping | None, path: str = "norm") -> "NormConfig":
        """The block checked (``config.ConfigError`` naming the key path)."""
        return cls(**check(cls, dict(block or {}), path))


def code_descriptions(label: str, alternative_label: str = "") -> list[str]:
    """The distinct surface forms of a valid code: ``a/b`` labels split into their forms,
    ``|``-separated alternative labels split too."""
    forms = [part.strip() for part in label.split("/")]
    forms += [part.strip() for part in alternative_label.split("|")] if alternative_label else []
    return list(dict.fromkeys(form for form in forms if form))


_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


def string_key(text: str, fold_accents: bool = True, strip_endings: bool = True) -> str:
    """A lookup key: lower-cased, punctuation dropped, spaces collapsed; accents folded
    (``ñ`` kept); each word of 4+ letters stripped of a final ``s``/``es`` and ``a``/``o``."""
    text = _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()
    if fold_accents:
        text = "".join(
            char
            for char in unicodedata.normalize("NFD", text.replace("ñ", "\0"))
            if unicodedata.category(char) != "Mn"
        ).replace("\0", "ñ")
    if strip_endings:
        text = " ".join(_strip_ending(word) for word in text.split(" "))
    return text


def _strip_ending(word: str) -> str:
    if len(word) < 4:
        return word
    if word.endswith("es") and len(word) > 5:
        word = word[:-2]
    elif word.endswith("s"):
        word = word[:-1]
    if word[-1:] in ("a", "o", "e") and len(word) > 4:
        word = word[:-1]
    return word


@dataclass
class NormPrediction:
    code: str
    score: float  # 1.0 for a string match; the winning vote share for kNN
    source: str  # "mention-match" | "description-match" | "knn"


@dataclass
class NormIndex:
    """Embedded rows (unit vectors) with their codes, plus string-match tables."""

    config: NormConfig
    valid_codes: list[str]
    row_codes: list[str]
    row_kinds: list[str]
    row_texts: list[str]
    embeddings: np.ndarray  # (rows, dim) float32, L2-normalised
    mention_keys: dict[str, str] = field(default_factory=dict)
    description_keys: dict[str, str] = field(default_factory=dict)
    dropped_mentions: int = 0
    _encoder: Encoder | None = field(default=None, repr=False, compare=False)

    # ---- building -----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        valid_codes: Mapping[str, Sequence[str]],
        mentions: Iterable[tuple[str, str]],
        config: NormConfig | None = None,
        encoder: Encoder | None = None,
    ) -> "NormIndex":
        """``valid_codes``: code -> its descriptions (see ``code_descriptions``);
        ``mentions``: (mention text, gold code) pairs from the training documents."""
        config = config or NormConfig()
        if not valid_codes:
            raise ValueError("NORM index needs at least one valid code")
        encoder = encoder or load_encoder(config.model)
        valid = set(valid_codes)
        kept: list[tuple[str, str]] = []
        dropped = 0
        for text, code in mentions:
            if code in valid and text.strip():
                kept.append((text, code))
            else:
                dropped += 1

        row_codes, row_kinds, row_texts = _text_rows(valid_codes, kept, config)
        vectors = embed(encoder, row_texts, config)
        mention_rows = [i for i, kind in enumerate(row_kinds) if kind == "mention"]
        centroid_codes, centroids = _centroids(
            [row_codes[i] for i in mention_rows], vectors[mention_rows]
        )
        row_codes += centroid_codes
        row_kinds += ["centroid"] * len(centroid_codes)
        row_texts += [f"<centroid {code}>" for code in centroid_codes]
        if len(centroids):
            vectors = np.vstack([vectors, centroids])

        mention_keys, description_keys = _exact_keys(kept, valid_codes, config)
        return cls(
            config=config,
            valid_codes=sorted(valid),
            row_codes=row_codes,
            row_kinds=row_kinds,
            row_texts=row_texts,
            embeddings=vectors.astype(np.float32),
            mention_keys=mention_keys,
            description_keys=description_keys,
            dropped_mentions=dropped,
            _encoder=encoder,
        )

    # ---- querying -----------------------------------------------------------------------
    def predict(self, texts: Sequence[str]) -> list[NormPrediction]:
        config = self.config
        fold = dict(fold_accents=config.fold_accents, strip_endings=config.strip_endings)
        results: list[NormPrediction | None] = [None] * len(texts)
        pending: list[int] = []
        for i, text in enumerate(texts):
            key = string_key(text, **fold)
            if config.string_match and key in self.mention_keys:
                results[i] = NormPrediction(self.mention_keys[key], 1.0, "mention-match")
            elif config.string_match and key in self.description_keys:
                results[i] = NormPrediction(self.description_keys[key], 1.0, "description-match")
            else:
                pending.append(i)
        if pending:
            queries = embed(self.encoder, [texts[i] for i in pending], config)
            for i, prediction in zip(pending, self._knn(queries)):
                results[i] = prediction
        return results  # type: ignore[return-value]

    def normalize(self, texts: Sequence[str]) -> list[str]:
        """The code of each mention (always one of ``valid_codes``)."""
        return [prediction.code for prediction in self.predict(texts)]

    def _knn(self, queries: np.ndarray) -> list[NormPrediction]:
        usable = np.array([kind in self.config.kinds for kind in self.row_kinds])
        rows = np.flatnonzero(usable)
        if len(rows) == 0:
            raise ValueError(f"the NORM index has no rows of kinds {self.config.kinds}")
        sims = queries @ self.embeddings[rows].T
        k = min(self.config.k, len(rows))
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        predictions = []
        for query_sims, neighbours in zip(sims, top):
            votes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for j in neighbours:
                tally = votes[self.row_codes[rows[j]]]
                tally[0] += 1.0
                tally[1] += float(query_sims[j])
            if self.config.vote == "weighted":
                ranked = sorted(votes.items(), key=lambda item: -item[1][1])
                total = sum(max(t[1], 0.0) for t in votes.values()) or 1.0
                code, (_, weight) = ranked[0]
                score = max(weight, 0.0) / total
            else:
                ranked = sorted(votes.items(), key=lambda item: (-item[1][0], -item[1][1]))
                code, (count, _) = ranked[0]
                score = count / k
            predictions.append(NormPrediction(code, score, "knn"))
        return predictions

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.config.model)
        return self._encoder

    # ---- persistence --------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": np.ascontiguousarray(self.embeddings)}, directory / EMBEDDINGS_FILE)
        meta = {
            "config": self.config.model_dump(mode="json"),
            "valid_codes": self.valid_codes,
            "row_codes": self.row_codes,
            "row_kinds": self.row_kinds,
            "row_texts": self.row_texts,
            "mention_keys": self.mention_keys,
            "description_keys": self.description_keys,
            "dropped_mentions": self.dropped_mentions,
        }
        (directory / INDEX_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, encoder: Encoder | None = None, model: str | None = None
    ) -> "NormIndex":
        """Read an index saved by ``save``; ``model`` overrides the saved encoder name/path."""
        directory = Path(directory)
        for name in (INDEX_FILE, EMBEDDINGS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"NORM index file missing: {directory / name}")
        try:
            meta = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
            embeddings = load_file(str(directory / EMBEDDINGS_FILE))["embeddings"]
        except (ValueError, KeyError) as error:
            raise ValueError(f"corrupt NORM index in {directory}: {error}") from error
        config = NormConfig.from_dict(meta["config"])
        if model is not None:
            config.model = model
        if embeddings.shape[0] != len(meta["row_codes"]):
            raise ValueError(
                f"{directory / EMBEDDINGS_FILE}: {embeddings.shape[0]} rows but "
                f"{len(meta['row_codes'])} codes in {INDEX_FILE}"
            )
        invalid = set(meta["row_codes"]) - set(meta["valid_codes"])
        if invalid:
            raise ValueError(f"{directory / INDEX_FILE}: rows with invalid codes {sorted(invalid)[:5]}")
        return cls(
            config=config,
            valid_codes=meta["valid_codes"],
            row_codes=meta["row_codes"],
            row_kinds=meta["row_kinds"],
            row_texts=meta["row_texts"],
            embeddings=embeddings,
            mention_keys=meta["mention_keys"],
            description_keys=meta["description_keys"],
            dropped_mentions=meta["dropped_mentions"],
            _encoder=encoder,
        )


@lru_cache(maxsize=2)
def load_encoder(model: str) -> Encoder:
    """A SentenceTransformer from a hub name (cached when offline), a local path, or
    ``package:NAME`` (the model dir ``NAME.get_model_path()`` gives, as the transformer backbone
    reads it); one instance per name and process (a sweep's trials reuse it). An ``e5:`` export
    has no pooler (``profner_models.e5``), and mean pooling needs none: it loads without one,
    so transformers has no missing weights to report."""
    from sentence_transformers import SentenceTransformer  # lazy: seconds to import

    kwargs = {"add_pooling_layer": False} if str(model).startswith("e5:") else None
    with quiet_transformers():  # no load report or bar in a main job's output
        return SentenceTransformer(resolve(str(model)), device="cpu", model_kwargs=kwargs)


def embed(encoder: Encoder, texts: Sequence[str], config: NormConfig) -> np.ndarray:
    """Unit vectors: each text inside every template, embedded, averaged, re-normalised."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    templates = config.templates or ("{}",)
    sentences = [template.format(text.strip()) for template in templates for text in texts]
    vectors = np.asarray(
        encoder.encode(
            sentences,
            batch_size=config.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        ),
        dtype=np.float32,
    )
    vectors = vectors.reshape(len(templates), len(texts), -1).mean(axis=0)
    return _unit(vectors)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _text_rows(valid_codes: Mapping[str, Sequence[str]], kept: Sequence[tuple[str, str]],
               config: NormConfig) -> tuple[list[str], list[str], list[str]]:
    """(codes, kinds, texts) of the rows to embed: the code descriptions when ``description``
    is among the kinds (14,600 forms for MEDDOPROF: embedded only if used), then each distinct
    training mention."""
    rows = []
    if "description" in config.kinds:
        rows += [(code, "description", form) for code, forms in valid_codes.items()
                 for form in dict.fromkeys(forms)]
    rows += [(code, "mention", text) for text, code in dict.fromkeys(kept)]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _exact_keys(kept: Sequence[tuple[str, str]], valid_codes: Mapping[str, Sequence[str]],
                config: NormConfig) -> tuple[dict[str, str], dict[str, str]]:
    """The exact-match lookups: a training mention's folded text -> its most frequent code, and
    a code description's -> its code (several codes share a label, ESCO levels 01/011/0110:
    the one used most in training wins)."""
    fold = dict(fold_accents=config.fold_accents, strip_endings=config.strip_endings)
    prior = Counter(code for _, code in kept)
    mention_votes: dict[str, Counter] = defaultdict(Counter)
    for text, code in kept:
        mention_votes[string_key(text, **fold)][code] += 1
    description_votes: dict[str, Counter] = defaultdict(Counter)
    for code, forms in valid_codes.items():
        for form in dict.fromkeys(forms):
            description_votes[string_key(form, **fold)][code] = 1 + prior[code]
    return ({key: _top(votes) for key, votes in mention_votes.items() if key},
            {key: _top(votes) for key, votes in description_votes.items() if key})


def _centroids(codes: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    by_code: dict[str, list[int]] = defaultdict(list)
    for i, code in enumerate(codes):
        by_code[code].append(i)
    names = sorted(by_code)
    if not names:
        return [], np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    return names, _unit(np.stack([vectors[by_code[code]].mean(axis=0) for code in names]))


def _top(votes: Counter) -> str:
    """Most frequent code; ties go to the code first seen (Counter keeps insertion order)."""
    return max(votes.items(), key=lambda item: item[1])[0]
