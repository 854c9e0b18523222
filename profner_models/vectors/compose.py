"""The vector space a backbone's words live in: parts side by side, optionally cut by PCA.

Config (the ``vectors`` block of a backbone's ``words`` settings)::

    vectors: null                                  # random init
    vectors: {path: /x/cc.es.300.vec}              # load (format: auto | text | binary)
    vectors: {train: {...}}                        # gensim skip-gram / CBOW / FastText (gensim.py)
    vectors: {e5: {sources: [...]}}                # multilingual-e5-small static vectors (e5.py)
    vectors: {concat: [{train: {...}}, {e5: {...}}]}   # the parts side by side
    vectors: {concat: {gensim: {train: {...}}, e5: {e5: {...}}}}   # the same, parts named (in
                                                   # order; a null part is left out)
    vectors: {concat: [...], pca: 256}             # any block, cut to its first 256 principal
                                                   # components (a narrower encoder input: speed)

A ``VectorSpace`` gives a vector for *any* word: ``vectors(words)`` uses each part's own row for
a word it was built on, ``unknown_vectors(words)`` what the word would get had no part seen it
(e5 pieces and FastText n-grams still say something; a skip-gram table gives zeros). Both go
through the same scaling and PCA, so a word met only at prediction time lands in the space the
network was trained in. ``save`` / ``load`` keep what unknown words need (the PCA, the scales,
FastText's n-grams, the e5 weights' checksum), not the tables of known words (those are the
backbone's weights).

``concat`` takes the union of the parts' words; every part after the first is rescaled to the
first's standard deviation, so no part dominates the start of training by scale alone (e5's
static vectors are ~2x smaller than gensim's). The PCA is fitted on the union's vectors: the
words of the sources, which hold no held-out text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np
import torch
from pydantic import Field, model_serializer, model_validator
from safetensors.numpy import load_file, save_file

from profner_models.config import Schema, resolve_data_path
from profner_models.vectors.base import Part, StaticPart, VectorsError, load_vectors
from profner_models.vectors.e5 import E5Part, e5_part
from profner_models.vectors.gensim import FastTextPart, train_part
from profner_models.vectors.sources import NOTHING, HeldOut

SPACE_FILE, ARRAYS_FILE = "space.json", "space.safetensors"


class TrainVectorsConfig(Schema):
    """``train``: gensim vectors (``gensim.train_part``)."""

    sources: list[str] = Field(default_factory=lambda: ["@train"])
    algorithm: Literal["skipgram", "cbow", "fasttext"] = "skipgram"
    dim: int = Field(300, ge=1)
    window: int = Field(5, ge=1)
    min_count: int = Field(2, ge=1)
    epochs: int = Field(10, ge=1)
    seed: int = 13
    lowercase: bool | None = None
    """None: as the backbone's words."""
    min_n: int = Field(3, ge=1)
    max_n: int = Field(6, ge=1)
    bucket: int = Field(100_000, ge=1)


class E5VectorsConfig(Schema):
    """``e5``: multilingual-e5-small static vectors of the sources' words (``e5.e5_part``)."""

    sources: list[str] = Field(min_length=1)
    lowercase: bool | None = None


class VectorsConfig(Schema):
    """A ``vectors`` block: exactly one of ``path`` / ``train`` / ``e5`` / ``concat``, plus an
    optional ``pca``. Keys left unset are left out of the saved config."""

    path: str | None = None
    format: Literal["auto", "text", "binary"] | None = None
    limit: int | None = Field(None, ge=1)
    train: TrainVectorsConfig | None = None
    e5: E5VectorsConfig | None = None
    concat: Union[list[Union["VectorsConfig", None]], dict[str, Union["VectorsConfig", None]], None] = None
    pca: int | None = Field(None, ge=1)
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "VectorsConfig":
        given = [key for key in ("path", "train", "e5", "concat") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"a vectors block needs exactly one of path, train, e5, concat "
                             f"(got {', '.join(given) or 'none'})")
        return self

    @model_serializer(mode="wrap")
    def _set_keys_only(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}
PART_KINDS: dict[str, type[Part]] = {"static": StaticPart, "fasttext": FastTextPart, "e5": E5Part}


class VectorSpace:
    """Parts, their scales and an optional PCA (``mean``, ``components`` ``[dim, total]``)."""

    def __init__(self, parts: Sequence[Part], scales: Sequence[float],
                 mean: np.ndarray | None = None, components: np.ndarray | None = None) -> None:
        self.parts, self.scales = list(parts), [float(s) for s in scales]
        self.mean, self.components = mean, components
        self._projection = None if components is None else (
            torch.from_numpy(np.ascontiguousarray(mean)),
            torch.from_numpy(np.ascontiguousarray(components.T)))
        self.words = list(dict.fromkeys(w for part in self.parts for w in part.words))

    @property
    def dim(self) -> int:
        if self.components is not None:
            return int(self.components.shape[0])
        return sum(part.dim for part in self.parts)

    @property
    def extends(self) -> bool:
        """Whether an unknown word gets more than the vector of no information."""
        return any(part.extends for part in self.parts)

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        return self._project([part.vectors(words) for part in self.parts])

    def unknown_vectors(self, words: Sequence[str]) -> np.ndarray:
        return self._project([part.unknown_vectors(words) for part in self.parts])

    def null_vector(self) -> np.ndarray:
        """The vector of a word no part knows anything about (zeros before the PCA)."""
        return self._project([np.zeros((1, part.dim), np.float32) for part in self.parts])[0]

    def _project(self, blocks: list[np.ndarray]) -> np.ndarray:
        joined = np.concatenate([b * s for b, s in zip(blocks, self.scales)], axis=1)
        if self.components is None:
            return joined.astype(np.float32)
        # torch, not numpy: its matmul keeps to torch.set_num_threads, where NumPy's BLAS spins
        # up its own threads (1.2 ms for 3 words on a busy 2-core machine, 0.02 ms in torch)
        mean, projection = self._projection
        return ((torch.from_numpy(joined.astype(np.float32)) - mean) @ projection).numpy()

    def fit_pca(self, dim: int) -> "VectorSpace":
        """This space cut to the first ``dim`` principal components of its words' vectors."""
        if self.components is not None:
            raise VectorsError("pca: the block is already cut (one pca per space)")
        total = sum(part.dim for part in self.parts)
        if not 0 < dim <= total:
            raise VectorsError(f"pca: {dim} must be in 1..{total} (the vectors' size)")
        matrix = self.vectors(self.words)
        mean = matrix.mean(axis=0)
        _, _, components = np.linalg.svd(matrix - mean, full_matrices=False)
        return VectorSpace(self.parts, self.scales, mean.astype(np.float32),
                           components[:dim].astype(np.float32))

    def save(self, directory: Path) -> list[str]:
        """Write what unknown words need; the file names written, relative to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays, parts = {}, []
        for i, part in enumerate(self.parts):
            part_arrays, info = part.state()
            arrays.update({f"part{i}.{k}": v for k, v in part_arrays.items()})
            parts.append(info)
        if self.components is not None:
            arrays.update(mean=self.mean, components=self.components)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()} or
                  {"empty": np.zeros(0, np.float32)}, str(directory / ARRAYS_FILE))
        (directory / SPACE_FILE).write_text(
            json.dumps({"parts": parts, "scales": self.scales}, indent=1), encoding="utf-8")
        return [SPACE_FILE, ARRAYS_FILE]

    @classmethod
    def load(cls, directory: Path) -> "VectorSpace":
        """What ``save`` wrote (``VectorsError`` naming the file when it cannot be used)."""
        directory = Path(directory)
        try:
            spec = json.loads((directory / SPACE_FILE).read_text(encoding="utf-8"))
            arrays = load_file(str(directory / ARRAYS_FILE))
        except (OSError, ValueError) as error:
            raise VectorsError(f"{directory}: unreadable vector space ({error})") from error
        parts = []
        for i, info in enumerate(spec["parts"]):
            kind = PART_KINDS.get(info.get("kind"))
            if kind is None:
                raise VectorsError(f"{directory / SPACE_FILE}: unknown vectors part {info.get('kind')!r}")
            prefix = f"part{i}."
            parts.append(kind.restore({k[len(prefix):]: v for k, v in arrays.items()
                                       if k.startswith(prefix)}, info))
        return cls(parts, spec["scales"], arrays.get("mean"), arrays.get("components"))


def space_from_config(block: dict | None, *, lowercase: bool,
                      train_words: Sequence[Sequence[str]] = (), held_out: HeldOut = NOTHING,
                      cache_dir: str | Path | None = None) -> VectorSpace | None:
    """The space a ``words.vectors`` block asks for (None: random init); see the docstring."""
    if not block:
        return None
    if block.get("pca"):
        inner = {k: v for k, v in block.items() if k != "pca"}
        space = space_from_config(inner, lowercase=lowercase, train_words=train_words,
                                  held_out=held_out, cache_dir=cache_dir)
        if space is None:
            raise VectorsError("pca: needs vectors to cut (the block gives none)")
        return space.fit_pca(int(block["pca"]))
    if block.get("concat") is not None:
        parts = block["concat"]
        if isinstance(parts, dict):  # named parts (a search space can merge into one, or null it)
            parts = [part for part in parts.values() if part]
        if not isinstance(parts, list) or not parts:
            raise VectorsError(f"'concat' needs a list or mapping of vectors blocks: {block!r}")
        spaces = [space_from_config(part, lowercase=lowercase, train_words=train_words,
                                    held_out=held_out, cache_dir=cache_dir) for part in parts]
        if any(s is None or s.components is not None for s in spaces):
            raise VectorsError("'concat' parts must each give vectors and no pca of their own")
        return concat([p for s in spaces for p in s.parts])
    return VectorSpace([_part(block, lowercase, train_words, held_out, cache_dir)], [1.0])


def concat(parts: Sequence[Part]) -> VectorSpace:
    """The parts side by side, each after the first rescaled to the first's spread."""
    spreads = [float(part.vectors(part.words).std()) if part.words else 1.0 for part in parts]
    first = spreads[0] or 1.0
    return VectorSpace(parts, [1.0] + [first / (s or 1.0) for s in spreads[1:]])


def _part(block: dict, lowercase: bool, train_words: Sequence[Sequence[str]], held_out: HeldOut,
          cache_dir: str | Path | None) -> Part:
    if block.get("path"):
        return StaticPart(load_vectors(resolve_data_path(block["path"]),
                                       block.get("format") or "auto", block.get("limit")))
    if block.get("train"):
        settings = dict(block["train"])
        sources = settings.pop("sources", ["@train"])
        if settings.get("lowercase") is None:
            settings["lowercase"] = lowercase
        return train_part(sources, train_words=train_words, held_out=held_out,
                          cache_dir=block.get("cache_dir") or cache_dir, **settings)
    if block.get("e5") is not None:
        settings = dict(block["e5"] or {})
        lower = settings.get("lowercase")
        return e5_part(settings.get("sources") or [], held_out=held_out, train_words=train_words,
                       lowercase=lowercase if lower is None else bool(lower))
    raise VectorsError(f"vectors block needs 'path', 'train', 'e5' or 'concat': {block!r}")
