"""Word vectors as tables: ``WordVectors``, word2vec / fastText ``.vec`` files, the cache format.

Files from elsewhere are read with gensim's word2vec reader (text or binary). What this project
writes itself — the vectors cache, a vector space inside a model dir — is safetensors for the
numbers and JSON for the words and settings: never a pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file


class VectorsError(ValueError):
    """A vectors file, block or source that cannot be used (the message names it)."""


@dataclass
class WordVectors:
    """Rows of ``matrix`` (float32 ``[len(words), dim]``) are the vectors of ``words``."""

    words: list[str]
    matrix: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> dict[str, int]:
        return {word: i for i, word in enumerate(self.words)}


def load_vectors(path: str | Path, fmt: str = "auto", limit: int | None = None) -> WordVectors:
    """Read word2vec text/binary or fastText ``.vec`` (word2vec text with a header line)."""
    from gensim.models import KeyedVectors  # lazy: gensim costs ~1 s to import

    path = Path(path).expanduser()
    if not path.is_file():
        raise VectorsError(f"{path}: word vectors file not found")
    if fmt not in ("auto", "text", "binary"):
        raise VectorsError(f"{path}: unknown vectors format {fmt!r} (auto | text | binary)")
    binary = _is_binary(path) if fmt == "auto" else fmt == "binary"
    try:
        kv = KeyedVectors.load_word2vec_format(
            str(path), binary=binary, limit=limit, unicode_errors="replace")
    except (ValueError, EOFError, UnicodeDecodeError) as error:
        raise VectorsError(f"{path}: not a word2vec/fastText vectors file ({error})") from error
    return WordVectors(list(kv.index_to_key), np.asarray(kv.vectors, dtype=np.float32))


def write_word2vec(vectors: WordVectors, path: str | Path) -> Path:
    """Write word2vec text (header ``count dim``); words may not hold whitespace."""
    from gensim.models import KeyedVectors  # lazy: see load_vectors

    path = Path(path)
    bad = next((w for w in vectors.words if not w or any(ch.isspace() for ch in w)), None)
    if bad is not None:
        raise VectorsError(f"{path}: word {bad!r} is empty or holds whitespace: not writable as word2vec")
    if not vectors.words:
        raise VectorsError(f"{path}: no word vectors to write")
    kv = KeyedVectors(vector_size=vectors.dim)
    kv.add_vectors(vectors.words, vectors.matrix)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    kv.save_word2vec_format(str(tmp), binary=False)
    tmp.replace(path)
    return path


def save_arrays(path: Path, arrays: dict[str, np.ndarray], info: dict) -> None:
    """``path`` (.safetensors) with the arrays and ``path`` .json with ``info``; atomic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
    side = path.with_suffix(".json")
    side.write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)  # the arrays last: a file pair with arrays is complete


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """What ``save_arrays`` wrote (``VectorsError`` naming the file when unreadable)."""
    side = path.with_suffix(".json")
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
        arrays = load_file(str(path))
    except (OSError, ValueError) as error:
        raise VectorsError(f"{path}: unreadable vectors ({error})") from error
    return arrays, info


def _is_binary(path: Path) -> bool:
    if path.suffix == ".bin":
        return True
    with path.open("rb") as handle:
        handle.readline()
        chunk = handle.read(4096)
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start < len(chunk) - 4  # a cut multi-byte char at the end is still text
    return False


class Part:
    """One kind of pretrained vectors in a space: the words it was built for, and a vector for
    any word (its own row, one computed for a word it never saw, or zeros when it cannot)."""

    kind: str = ""
    words: list[str]
    dim: int
    extends: bool = False
    """Whether ``unknown_vectors`` gives more than zeros. Such a part gives an unknown word
    the mean of the rows of a table the word picks (``bags``: e5 pieces, FastText n-grams)."""

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """``[len(words), dim]``: each word's own vector, or its unknown-word vector."""
        raise NotImplementedError

    def unknown_vectors(self, words: Sequence[str]) -> np.ndarray:
        """``[len(words), dim]``: the vectors the words would get had the part never seen them."""
        if not self.extends:
            return np.zeros((len(words), self.dim), np.float32)
        return self.bag_vectors(self.bags(words))

    def bags(self, words: Sequence[str]) -> list[list[int]]:
        """A part that ``extends``: the table rows each word's unknown vector averages."""
        raise NotImplementedError

    def bag_vectors(self, bags: Sequence[Sequence[int]]) -> np.ndarray:
        """``[len(bags), dim]``: each bag's mean row (``bag_means`` over ``bag_rows``)."""
        return bag_means(bags, self.bag_rows, self.dim)

    def bag_rows(self, ids: np.ndarray) -> np.ndarray:
        """A part that ``extends`` without its own ``bag_vectors``: its table's rows ``ids``,
        float32 ``[len(ids), dim]``."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """What ``unknown_vectors`` needs after a restore: arrays and JSON settings."""
        return {}, {"kind": self.kind, "dim": self.dim}


def bag_means(bags: Sequence[Sequence[int]], rows: Callable[[np.ndarray], np.ndarray],
              dim: int) -> np.ndarray:
    """``[len(bags), dim]``: each bag's mean row (``ndarray.mean``), zeros for an empty bag;
    ``rows(ids)`` gives the rows of ``ids``, all bags' in one call."""
    out = np.zeros((len(bags), dim), np.float32)
    flat = [i for bag in bags for i in bag]
    if not flat:
        return out
    table, end = rows(np.array(flat, np.int64)), 0
    for n, bag in enumerate(bags):
        if len(bag):
            start, end = end, end + len(bag)
            out[n] = table[start:end].mean(axis=0)
    return out


class StaticPart(Part):
    """A fixed table (a vectors file, gensim skip-gram / CBOW): unknown words get zeros."""

    kind = "static"

    def __init__(self, vectors: WordVectors) -> None:
        self.words, self.matrix = vectors.words, vectors.matrix
        self.dim = vectors.dim
        self._index = vectors.index()

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(words), self.dim), np.float32)
        rows = [(i, self._index[w]) for i, w in enumerate(words) if w in self._index]
        if rows:
            at, row = zip(*rows)
            out[list(at)] = self.matrix[list(row)]
        return out

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], info: dict) -> "StaticPart":
        return cls(WordVectors([], np.zeros((0, int(info["dim"])), np.float32)))
