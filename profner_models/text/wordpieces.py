"""Words -> transformer word pieces (HF fast tokenizers), so word-level tags map to pieces.

Every word keeps at least one piece: a word the tokenizer reduces to nothing ("\\n", a
zero-width space, some emoji in some vocabularies) is replaced by a placeholder word (the
tokenizer's unk token unless told otherwise) and listed in ``WordPieces.replaced``.
A sequence longer than ``max_length`` pieces is cut at a word boundary (``truncated``,
``n_words``); ``profner_models.text.windows`` plans overlapping windows over long texts instead.

``PieceTable``: a tokenizer that reads each word alone (BERT's WordPiece; sentencepiece with
"▁" before every word, as e5's) gives a window the pieces of its words one after the other, so
each word is tokenized once and a window's pieces are looked up: a MEDDOPROF window cost three
tokenizer calls (its counts, its placeholders, its ids), ~45 of a training step's ~70 ms of
batch making on this CPU. A tokenizer whose pieces of a word depend on its neighbours
(sentencepiece with "▁" before the first word only) gets no table and is called as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

TABLE_SIZE = 500_000  # words a PieceTable keeps before it starts again

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@dataclass(frozen=True)
class WordPieces:
    input_ids: list[int]  # with the tokenizer's special tokens
    word_ids: list[int | None]  # word index of each piece (None: special token)
    first_piece: list[int]  # for each kept word, the index of its first piece in input_ids
    n_words: int  # words kept (a prefix of the input words)
    truncated: bool  # True when words were cut off at max_length
    replaced: tuple[int, ...] = ()  # words with no piece of their own, given the placeholder

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.input_ids)


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer: word_ids() is needed")


def _max_length(tokenizer, max_length: int | None) -> int:
    if max_length is not None:
        return max_length
    model_max = getattr(tokenizer, "model_max_length", None)
    return model_max if isinstance(model_max, int) and model_max < 1_000_000 else 512


class PieceTable:
    """A tokenizer's pieces per word (special tokens aside), each word tokenized once; made by
    ``of``, which checks that the tokenizer reads each word alone."""

    PROBE = ("Hola", "mundo", ",", "años", "1.5", "@x", "👩🏽‍⚕️", "HOSPITAL", "x")

    def __init__(self, tokenizer: PreTrainedTokenizerFast) -> None:
        self.tokenizer = tokenizer
        self.rows: dict[str, list[int]] = {}
        plain = self._ids(["x"], False)
        full = self._ids(["x"], True)
        at = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
        self.prefix, self.suffix = full[:at], full[at + len(plain):]

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerFast) -> PieceTable | None:
        """A table for ``tokenizer``, or None when a probe's pieces differ from its words'
        pieces one after the other (or its special tokens do not frame the words)."""
        _check_fast(tokenizer)
        try:
            table = cls(tokenizer)
        except StopIteration:
            return None
        probe = list(cls.PROBE)
        alone = [i for pieces in table.pieces(probe) for i in pieces]
        together = table.prefix + alone + table.suffix
        fits = table._ids(probe, False) == alone and table._ids(probe, True) == together
        table.rows.clear()
        return table if fits else None

    def pieces(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's piece ids (an empty list: the tokenizer drops the word)."""
        new = [w for w in dict.fromkeys(words) if w not in self.rows]
        if new:
            if len(self.rows) + len(new) > TABLE_SIZE:
                self.rows.clear()
            encodings = self.tokenizer([[w] for w in new], add_special_tokens=False,
                                       is_split_into_words=True, verbose=False)["input_ids"]
            self.rows.update(zip(new, encodings))
        return [self.rows[w] for w in words]

    def _ids(self, words: list[str], specials: bool) -> list[int]:
        return list(self.tokenizer(words, is_split_into_words=True, add_special_tokens=specials,
                                   verbose=False)["input_ids"])


def piece_counts(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], placeholder: str | None = None,
                 table: PieceTable | None = None) -> tuple[list[str], list[int], tuple[int, ...]]:
    """(words with placeholders, pieces per word (all >= 1), indices of replaced words);
    ``table``: the tokenizer's ``PieceTable`` (the same counts, each word tokenized once)."""
    _check_fast(tokenizer)
    words = list(words)
    if not words:
        return [], [], ()
    counts = _counts(tokenizer, words, table)
    replaced = tuple(i for i, n in enumerate(counts) if n == 0)
    if replaced:
        fill = placeholder or tokenizer.unk_token
        if fill is None:
            raise ValueError("the tokenizer has no unk token: pass a placeholder")
        words = [fill if n == 0 else w for w, n in zip(words, counts)]
        counts = _counts(tokenizer, words, table)
        if 0 in counts:
            raise ValueError(f"placeholder {fill!r} gives no word piece either")
    return words, counts, replaced


def _counts(tokenizer, words: list[str], table: PieceTable | None) -> list[int]:
    if table is not None:
        return [len(pieces) for pieces in table.pieces(words)]
    encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
    counts = [0] * len(words)
    for word in encoding.word_ids():
        if word is not None:
            counts[word] += 1
    return counts


def encode_words(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], max_length: int | None = None,
                 placeholder: str | None = None, table: PieceTable | None = None) -> WordPieces:
    """Word pieces of ``words`` with special tokens, at most ``max_length`` pieces (default: the
    tokenizer's model_max_length, 512 when it has none), cut at a word boundary; ``table``: as
    ``piece_counts``'."""
    words, counts, replaced = piece_counts(tokenizer, words, placeholder, table)
    budget = _max_length(tokenizer, max_length) - tokenizer.num_special_tokens_to_add(pair=False)
    n_words, used = 0, 0
    while n_words < len(words) and used + counts[n_words] <= budget:
        used += counts[n_words]
        n_words += 1
    if table is not None:
        return _looked_up(table, words[:n_words], n_words < len(words), replaced)
    return _encode(tokenizer, words[:n_words], n_words < len(words), replaced)


def _looked_up(table: PieceTable, words: list[str], truncated: bool,
               replaced: tuple[int, ...]) -> WordPieces:
    ids, word_ids = list(table.prefix), [None] * len(table.prefix)
    first = []
    for word, pieces in enumerate(table.pieces(words)):
        first.append(len(ids))
        ids += pieces
        word_ids += [word] * len(pieces)
    ids += table.suffix
    word_ids += [None] * len(table.suffix)
    return WordPieces(ids, word_ids, first, len(words), truncated,
                      tuple(i for i in replaced if i < len(words)))


def _encode(tokenizer, words: list[str], truncated: bool, replaced: tuple[int, ...]) -> WordPieces:
    encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=True)
    word_ids = encoding.word_ids()
    first = [-1] * len(words)
    for index, word in enumerate(word_ids):
        if word is not None and first[word] < 0:
            first[word] = index
    return WordPieces(list(encoding["input_ids"]), word_ids, first, len(words), truncated,
                      tuple(i for i in replaced if i < len(words)))
