"""Vocabularies, character ids and length-bucketed batching.

Backbone-independent pieces: a ``Vocab`` (JSON on disk, id 0 padding, 1 unknown), the
per-word character id tensor an RNN backbone needs, and ``bucket_batches`` which groups
documents of similar length so padding stays small.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

PAD, UNK = "<pad>", "<unk>"
SPELLINGS = 200_000  # words whose character ids a vocabulary remembers (then it starts afresh)


class Vocab:
    """A word or character vocabulary: ``PAD`` is id 0, ``UNK`` id 1."""

    def __init__(self, items: Iterable[str]) -> None:
        self.items: list[str] = [PAD, UNK]
        self._ids: dict[str, int] = {PAD: 0, UNK: 1}
        self._spellings: dict[str, list[int]] = {}
        for item in items:
            if item not in self._ids:
                self._ids[item] = len(self.items)
                self.items.append(item)

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> "Vocab":
        """Items seen ``min_count`` times, most frequent first."""
        counts = Counter(item for seq in sequences for item in seq)
        return cls(item for item, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                   if n >= min_count)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def id(self, item: str) -> int:
        return self._ids.get(item, 1)

    def ids(self, items: Iterable[str]) -> list[int]:
        return [self._ids.get(item, 1) for item in items]

    def spelling(self, word: str) -> list[int]:
        """A character vocabulary's ids of ``word``'s characters, remembered (a text's words
        are mostly ones met before)."""
        ids = self._spellings.get(word)
        if ids is None:
            if len(self._spellings) >= SPELLINGS:
                self._spellings.clear()
            ids = self._spellings[word] = self.ids(word)
        return ids

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.items[2:], ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        items = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{path}: a vocabulary must be a JSON list of strings")
        return cls(items)


def pad_ids(rows: Sequence[Sequence[int]], value: int = 0) -> torch.Tensor:
    """Long ``[len(rows), longest]`` padded with ``value``."""
    width = max(1, max((len(r) for r in rows), default=0))
    # through NumPy: torch.tensor reads nested lists ~3x slower (a tweet's latency counts)
    return torch.from_numpy(np.array([[*r, *[value] * (width - len(r))] for r in rows], np.int64))


def char_ids(words: Sequence[Sequence[str]], vocab: Vocab, lowercase: bool = True,
             max_chars: int = 20) -> torch.Tensor:
    """Long ``[B, W, C]`` character ids per word (words cut to ``max_chars``; 0 = padding)."""
    width = max(len(doc) for doc in words)
    longest = max(1, min(max_chars, max((len(w) for doc in words for w in doc), default=1)))
    empty = [0] * longest
    rows = []
    for doc in words:
        row = []
        for word in doc:
            ids = vocab.spelling((word.lower() if lowercase else word)[:longest])
            row.append(ids + empty[len(ids):])
        rows.append(row + [empty] * (width - len(doc)))
    return torch.from_numpy(np.array(rows, np.int64))


def bucket_batches(lengths: Sequence[int], batch_size: int, shuffle: bool,
                   rng: random.Random | None = None, bucketing: bool = True) -> list[list[int]]:
    """Indices grouped into batches of similar length.

    Shuffled: indices are shuffled, cut into pools of 50 batches, each pool sorted by length
    and cut into batches, and the batches shuffled (randomness from ``rng``, so seeded runs
    repeat). Not shuffled: sorted by length (fewest pad positions, for evaluation).
    ``bucketing=False`` (shuffled only) gives plain random batches, the baseline that
    ``bench/training.py --compare-bucketing`` measures against.
    """
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = rng or random.Random()
    rng.shuffle(order)
    pool = batch_size * 50 if bucketing else batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
