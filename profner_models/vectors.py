"""Static word vectors: load word2vec (text or binary) / fastText ``.vec`` files, or train
skip-gram / CBOW vectors with gensim on local text, cached on disk under a key of their settings.

Config (the ``vectors`` block of a backbone's ``words`` settings)::

    vectors: null                                  # random init
    vectors: {path: /x/cc.es.300.vec}              # load (format: auto | text | binary)
    vectors: {train: {sources: [profner/subtask-2/brat/train, meddoprof], algorithm: skipgram,
                      dim: 300, window: 5, min_count: 2, epochs: 10, seed: 13}}
    vectors: {e5: {sources: [profner/subtask-2/brat/train]}}   # multilingual-e5-small's static
                                                   # vectors of these words (e5_vectors.py)
    vectors: {concat: [{train: {...}}, {e5: {...}}]}   # one vector per word, the parts side by side
    vectors: {concat: {gensim: {train: {...}}, e5: {e5: {...}}}}   # the same, parts named (in
                                                   # order; a null part is left out)
    vectors: {concat: [...], pca: 256}             # any block, cut to its first 256 principal
                                                   # components (a narrower encoder input: speed)

``concat`` takes the union of the parts' words; a word a part lacks gets zeros there, and every
part after the first is rescaled to the first's standard deviation, so no part dominates the
start of training by scale alone (e5's static vectors are ~2x smaller than gensim's). Measured
on ProfNER (seeded 20% dev, configs/rnn.yaml settings with dev held out): gensim skip-gram alone
7b F1 0.750, + e5 vectors of the train words 0.764, + e5 also for the gazetteer's and MEDDOPROF's
words with ``pca: 256`` 0.790.

``sources`` are files or folders: a folder contributes every ``*.txt`` under it (one document per
file), a ``.tsv`` file its first column (the gazetteer's terms), any other file its lines.
Relative paths resolve against the data root (``PROFNER_DATA_DIR``, default
``<repo>/../shared/data``). The special source ``"@train"`` is the training documents' words.
Vectors are cached as word2vec binary (never pickles) in ``cache_dir`` (default
``~/.cache/profner-hpo/vectors``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/profner-hpo/vectors")
TRAIN_SOURCE = "@train"
ALGORITHMS = {"skipgram": 1, "cbow": 0}


class VectorsError(ValueError):
    """A vectors file or source that cannot be used (the message names it)."""


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


def data_root() -> Path:
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("PROFNER_DATA_DIR", repo.parent / "shared" / "data"))


def load_vectors(path: str | Path, fmt: str = "auto", limit: int | None = None) -> WordVectors:
    """Read word2vec text/binary or fastText ``.vec`` (word2vec text with a header line)."""
    from gensim.models import KeyedVectors

    path = Path(path).expanduser()
    if not path.is_file():
        raise VectorsError(f"{path}: word vectors file not found")
    binary = _is_binary(path) if fmt == "auto" else fmt == "binary"
    if fmt not in ("auto", "text", "binary"):
        raise VectorsError(f"{path}: unknown vectors format {fmt!r} (auto | text | binary)")
    try:
        kv = KeyedVectors.load_word2vec_format(
            str(path), binary=binary, limit=limit, unicode_errors="replace"
        )
    except (ValueError, EOFError, UnicodeDecodeError) as error:
        raise VectorsError(f"{path}: not a word2vec/fastText vectors file ({error})") from error
    return WordVectors(list(kv.index_to_key), np.asarray(kv.vectors, dtype=np.float32))


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


def save_vectors(vectors: WordVectors, path: Path) -> None:
    """Write word2vec binary (what the cache holds)."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.dim)
    kv.add_vectors(vectors.words, vectors.matrix)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    kv.save_word2vec_format(str(tmp), binary=True)
    tmp.replace(path)


def train_vectors(
    sources: Sequence[str | Path],
    *,
    algorithm: str = "skipgram",
    dim: int = 300,
    window: int = 5,
    min_count: int = 2,
    epochs: int = 10,
    seed: int = 13,
    lowercase: bool = True,
    train_words: Sequence[Sequence[str]] = (),
    cache_dir: str | Path | None = None,
    workers: int = 1,
) -> WordVectors:
    """Train gensim Word2Vec (skip-gram or CBOW) on ``sources``; reuse the cached result when the
    settings and the sources (paths, sizes, mtimes, or the ``@train`` words) are unchanged."""
    if algorithm not in ALGORITHMS:
        raise VectorsError(f"unknown vectors algorithm {algorithm!r} (skipgram | cbow)")
    settings = dict(algorithm=algorithm, dim=dim, window=window, min_count=min_count,
                    epochs=epochs, seed=seed, lowercase=lowercase)
    paths = [s for s in sources if str(s) != TRAIN_SOURCE]
    resolved = [resolve_data_path(p) for p in paths]
    use_train = any(str(s) == TRAIN_SOURCE for s in sources)
    key = _cache_key(settings, resolved, train_words if use_train else ())
    cache = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / f"{key}.bin"
    if cache.is_file():
        log.info("word vectors: cache hit %s", cache)
        return load_vectors(cache, "binary")

    from gensim.models import Word2Vec

    sentences = _Sentences(resolved, train_words if use_train else (), lowercase)
    if not any(True for _ in sentences):
        raise VectorsError(f"no text to train word vectors on in {[str(p) for p in resolved]}")
    model = Word2Vec(
        sentences=sentences, vector_size=dim, window=window, min_count=min_count,
        sg=ALGORITHMS[algorithm], epochs=epochs, seed=seed, workers=workers,
    )
    vectors = WordVectors(list(model.wv.index_to_key), np.asarray(model.wv.vectors, np.float32))
    save_vectors(vectors, cache)
    (cache.with_suffix(".json")).write_text(
        json.dumps({"settings": settings, "sources": [str(p) for p in resolved],
                    "train_words": use_train}, indent=1), encoding="utf-8")
    log.info("word vectors: trained %d x %d, cached at %s", len(vectors.words), dim, cache)
    return vectors


def vectors_from_config(
    block: dict | None, *, lowercase: bool, train_words: Sequence[Sequence[str]] = (),
    cache_dir: str | Path | None = None,
) -> WordVectors | None:
    """The vectors a backbone's ``words.vectors`` block asks for (None: random init); with a
    ``pca: N`` key, cut to their first N principal components."""
    if not block:
        return None
    if block.get("pca"):
        inner = {k: v for k, v in block.items() if k != "pca"}
        return pca_vectors(vectors_from_config(inner, lowercase=lowercase, train_words=train_words,
                                               cache_dir=cache_dir), int(block["pca"]))
    if "path" in block:
        return load_vectors(resolve_data_path(block["path"]), block.get("format", "auto"), block.get("limit"))
    if "train" in block:
        settings = dict(block["train"])
        sources = settings.pop("sources", [TRAIN_SOURCE])
        settings.setdefault("lowercase", lowercase)
        return train_vectors(sources, train_words=train_words,
                             cache_dir=block.get("cache_dir", cache_dir), **settings)
    if "e5" in block:
        from profner_models.e5_vectors import corpus_words, e5_static_vectors, to_word_vectors

        settings = dict(block["e5"] or {})
        sources = settings.get("sources")
        if not sources:
            raise VectorsError(f"e5 vectors need 'sources' (folders or files of text): {block!r}")
        words = corpus_words(sources, bool(settings.get("lowercase", lowercase)))
        return to_word_vectors(e5_static_vectors(words))
    if "concat" in block:
        parts = block["concat"]
        if isinstance(parts, dict):  # named parts (a search space can merge into one, or null it)
            parts = [part for part in parts.values() if part]
        if not isinstance(parts, list) or not parts:
            raise VectorsError(f"'concat' needs a list or mapping of vectors blocks: {block!r}")
        return concat_vectors([vectors_from_config(part, lowercase=lowercase, train_words=train_words,
                                                   cache_dir=cache_dir) for part in parts])
    raise VectorsError(f"vectors block needs 'path', 'train', 'e5' or 'concat': {block!r}")


def pca_vectors(vectors: WordVectors | None, dim: int) -> WordVectors:
    """``vectors`` projected on their first ``dim`` principal components (centred, SVD)."""
    if vectors is None or not 0 < dim <= vectors.dim:
        raise VectorsError(f"pca: {dim} must be in 1..{vectors.dim if vectors else 0} (the vectors' size)")
    centred = vectors.matrix - vectors.matrix.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return WordVectors(vectors.words, (centred @ components[:dim].T).astype(np.float32))


def concat_vectors(parts: Sequence[WordVectors | None]) -> WordVectors:
    """The parts side by side over the union of their words (see the module docstring)."""
    if any(part is None for part in parts):
        raise VectorsError("'concat' parts must each give vectors (no null part)")
    words = list(dict.fromkeys(word for part in parts for word in part.words))
    row = {word: i for i, word in enumerate(words)}
    scale = float(parts[0].matrix.std()) or 1.0
    blocks = []
    for part in parts:
        block = np.zeros((len(words), part.dim), np.float32)
        block[[row[w] for w in part.words]] = part.matrix
        if blocks:
            block *= scale / (float(part.matrix.std()) or 1.0)
        blocks.append(block)
    return WordVectors(words, np.concatenate(blocks, axis=1))


def resolve_data_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else data_root() / path


def _cache_key(settings: dict, paths: list[Path], train_words: Sequence[Sequence[str]]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        if not path.exists():
            raise VectorsError(f"{path}: vectors training source not found")
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for words in train_words:
        digest.update("\0".join(words).encode() + b"\n")
    return digest.hexdigest()[:24]


class _Sentences:
    """Re-iterable tokenised sentences from the sources (gensim makes several passes)."""

    def __init__(self, paths: list[Path], train_words: Sequence[Sequence[str]], lowercase: bool):
        self.paths, self.train_words, self.lowercase = paths, train_words, lowercase
        self._cached: list[list[str]] | None = None

    def __iter__(self) -> Iterator[list[str]]:
        if self._cached is None:
            self._cached = [s for s in self._read() if s]
        return iter(self._cached)

    def _read(self) -> Iterable[list[str]]:
        from profner_models.tokenize import tokenize

        norm = str.lower if self.lowercase else str
        for words in self.train_words:
            yield [norm(w) for w in words]
        for text in _texts(self.paths):
            yield [norm(t.text) for t in tokenize(text) if not t.text.isspace()]


def _texts(paths: list[Path]) -> Iterable[str]:
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*.txt")):
                yield file.read_text(encoding="utf-8")
        elif path.suffix == ".tsv":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    yield line.split("\t", 1)[0]
        else:
            yield from (line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
