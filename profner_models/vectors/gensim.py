"""Vectors trained with gensim on local text: skip-gram, CBOW, or FastText (character n-grams).

Config (a ``train`` block)::

    train: {sources: [profner/subtask-2/brat/train, meddoprof/...], algorithm: skipgram,
            dim: 300, window: 5, min_count: 2, epochs: 10, seed: 13}
    train: {..., algorithm: fasttext, min_n: 3, max_n: 6, bucket: 100000}

Skip-gram and CBOW give a table: a word they never saw gets zeros. FastText (skip-gram with
subword n-grams) gives every word a vector: an unknown word's is the mean of its hashed
n-gram vectors, as gensim's ``FastTextKeyedVectors`` computes it; the n-gram table (``bucket`` x
``dim``, stored as float16) travels with the model so prediction can do the same.

Results are cached under a key of the settings, the source files (paths, sizes, mtimes), the
``@train`` words and the held-out documents (``sources.HeldOut``), as safetensors + JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from profner_models.vectors.base import Part, StaticPart, VectorsError, WordVectors, load_arrays, save_arrays
from profner_models.vectors.sources import NOTHING, HeldOut, fingerprint, sentences, split_sources

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/profner-hpo/vectors")
ALGORITHMS = ("skipgram", "cbow", "fasttext")
FASTTEXT_DEFAULTS = {"min_n": 3, "max_n": 6, "bucket": 100_000}


class FastTextPart(Part):
    """FastText vectors: the trained words' own, and n-gram means for any other word."""

    kind = "fasttext"
    extends = True

    def __init__(self, vectors: WordVectors, ngrams: np.ndarray, min_n: int, max_n: int) -> None:
        self.words, self.matrix = vectors.words, vectors.matrix
        self.dim = int(ngrams.shape[1])
        self.ngrams = ngrams
        self.min_n, self.max_n = int(min_n), int(max_n)
        self._index = vectors.index()

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        out = self.unknown_vectors(words)
        for i, word in enumerate(words):
            row = self._index.get(word)
            if row is not None:
                out[i] = self.matrix[row]
        return out

    def bags(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's n-gram buckets (Part.unknown_vectors averages their rows)."""
        from gensim.models.fasttext import ft_ngram_hashes  # lazy: gensim costs ~1 s to import

        bucket = int(self.ngrams.shape[0])
        return [ft_ngram_hashes(word, self.min_n, self.max_n, bucket) for word in words]

    def bag_rows(self, ids: np.ndarray) -> np.ndarray:
        return self.ngrams[ids].astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        return ({"ngrams": self.ngrams.astype(np.float16)},
                {"kind": self.kind, "dim": self.dim, "min_n": self.min_n, "max_n": self.max_n})

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], info: dict) -> "FastTextPart":
        dim = int(info["dim"])
        return cls(WordVectors([], np.zeros((0, dim), np.float32)), arrays["ngrams"],
                   info["min_n"], info["max_n"])


def train_part(
    sources: Sequence[str | Path],
    *,
    algorithm: str = "skipgram",
    dim: int = 300,
    window: int = 5,
    min_count: int = 2,
    epochs: int = 10,
    seed: int = 13,
    lowercase: bool = True,
    min_n: int = FASTTEXT_DEFAULTS["min_n"],
    max_n: int = FASTTEXT_DEFAULTS["max_n"],
    bucket: int = FASTTEXT_DEFAULTS["bucket"],
    train_words: Sequence[Sequence[str]] = (),
    held_out: HeldOut = NOTHING,
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> Part:
    """Train (or reuse from the cache) gensim vectors on ``sources``, ``held_out`` left out."""
    if algorithm not in ALGORITHMS:
        raise VectorsError(f"unknown vectors algorithm {algorithm!r} ({' | '.join(ALGORITHMS)})")
    settings = dict(algorithm=algorithm, dim=dim, window=window, min_count=min_count,
                    epochs=epochs, seed=seed, lowercase=lowercase)
    if algorithm == "fasttext":
        settings.update(min_n=min_n, max_n=max_n, bucket=bucket)
    paths, use_train = split_sources(sources)
    train_words = train_words if use_train else ()
    key = _cache_key(settings, paths, train_words, held_out)
    cache = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / f"{key}.safetensors"
    with building(cache):  # trials of one sweep starting together: one trains, the rest reuse
        if cache.is_file():
            log.info("word vectors: cache hit %s", cache)
            arrays, info = load_arrays(cache)
            return _part(info["words"], arrays, settings)
        text = sentences(sources, lowercase=lowercase, train_words=train_words, held_out=held_out)
        if not text:
            raise VectorsError(f"no text to train word vectors on in {[str(p) for p in paths]}")
        return _train(cache, settings, text, workers,
                      {"sources": [str(p) for p in paths], "train_words": use_train,
                       "held_out_documents": len(held_out)})


@contextlib.contextmanager
def building(cache: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``cache``'s ``.lock`` file (other processes that build the
    same vectors wait for it, then find the cache)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _train(cache: Path, settings: dict, text: list[list[str]], workers: int,
           provenance: dict) -> Part:
    """Train on ``text``, save the cache (with ``provenance``), return the part."""
    algorithm = settings["algorithm"]
    common = dict(sentences=text, vector_size=settings["dim"], window=settings["window"],
                  min_count=settings["min_count"], epochs=settings["epochs"],
                  seed=settings["seed"], workers=workers)
    if algorithm == "fasttext":
        from gensim.models import FastText  # lazy: see FastTextPart

        model = FastText(sg=1, min_n=settings["min_n"], max_n=settings["max_n"],
                         bucket=settings["bucket"], **common)
        arrays = {"vectors": model.wv.vectors, "ngrams": model.wv.vectors_ngrams.astype(np.float16)}
    else:
        from gensim.models import Word2Vec  # lazy: see FastTextPart

        model = Word2Vec(sg=1 if algorithm == "skipgram" else 0, **common)
        arrays = {"vectors": model.wv.vectors}
    words = list(model.wv.index_to_key)
    save_arrays(cache, {k: np.asarray(v) for k, v in arrays.items()},
                {"words": words, "settings": settings, **provenance})
    log.info("word vectors: trained %s %d x %d, cached at %s", algorithm, len(words),
             settings["dim"], cache)
    return _part(words, arrays, settings)


def _part(words: list[str], arrays: dict[str, np.ndarray], settings: dict) -> Part:
    table = WordVectors(words, np.asarray(arrays["vectors"], np.float32))
    if settings["algorithm"] == "fasttext":
        return FastTextPart(table, arrays["ngrams"], settings["min_n"], settings["max_n"])
    return StaticPart(table)


def _cache_key(settings: dict, paths: list[Path], train_words: Sequence[Sequence[str]],
               held_out: HeldOut) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(fingerprint(paths).encode())
    for words in train_words:
        digest.update("\0".join(words).encode() + b"\n")
    digest.update(held_out.digest().encode())
    return digest.hexdigest()[:24]
