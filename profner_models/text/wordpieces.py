"""Words -> transformer word pieces (HF fast tokenizers), so word-level tags map to pieces.

Every word keeps at least one piece: a word the tokenizer reduces to nothing ("\\n", a
zero-width space, some emoji in some vocabularies) is replaced by a placeholder word (the
tokenizer's unk token unless told otherwise) and listed in ``WordPieces.replaced``.
A sequence longer than ``max_length`` pieces is cut at a word boundary (``truncated``,
``n_words``); ``profner_models.text.windows`` plans overlapping windows over long texts instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

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


def piece_counts(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], placeholder: str | None = None,
                 ) -> tuple[list[str], list[int], tuple[int, ...]]:
    """(words with placeholders, pieces per word (all >= 1), indices of replaced words)."""
    _check_fast(tokenizer)
    words = list(words)
    if not words:
        return [], [], ()
    counts = _counts(tokenizer, words)
    replaced = tuple(i for i, n in enumerate(counts) if n == 0)
    if replaced:
        fill = placeholder or tokenizer.unk_token
        if fill is None:
            raise ValueError("the tokenizer has no unk token: pass a placeholder")
        words = [fill if n == 0 else w for w, n in zip(words, counts)]
        counts = _counts(tokenizer, words)
        if 0 in counts:
            raise ValueError(f"placeholder {fill!r} gives no word piece either")
    return words, counts, replaced


def _counts(tokenizer, words: list[str]) -> list[int]:
    encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False)
    counts = [0] * len(words)
    for word in encoding.word_ids():
        if word is not None:
            counts[word] += 1
    return counts


def encode_words(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], max_length: int | None = None,
                 placeholder: str | None = None) -> WordPieces:
    """Word pieces of ``words`` with special tokens, at most ``max_length`` pieces (default: the
    tokenizer's model_max_length, 512 when it has none), cut at a word boundary."""
    words, counts, replaced = piece_counts(tokenizer, words, placeholder)
    budget = _max_length(tokenizer, max_length) - tokenizer.num_special_tokens_to_add(pair=False)
    n_words, used = 0, 0
    while n_words < len(words) and used + counts[n_words] <= budget:
        used += counts[n_words]
        n_words += 1
    return _encode(tokenizer, words[:n_words], n_words < len(words), replaced)


def _encode(tokenizer, words: list[str], truncated: bool, replaced: tuple[int, ...]) -> WordPieces:
    encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=True)
    word_ids = encoding.word_ids()
    first = [-1] * len(words)
    for index, word in enumerate(word_ids):
        if word is not None and first[word] < 0:
            first[word] = index
    return WordPieces(list(encoding["input_ids"]), word_ids, first, len(words), truncated,
                      tuple(i for i in replaced if i < len(words)))
