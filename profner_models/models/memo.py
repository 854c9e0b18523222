"""What a model computes once and keeps out of training: rows per key read back with one
gather (``RowMemo``: the char encoder's states of a word's spelling, ``rnn.RNNBackbone``) and
values derived from a module's weights (``kept``: a GRU's joined weights and the char
encoder's input projections of each character, ``recurrent``)."""

from __future__ import annotations

import weakref
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

Key = bytes
Value = TypeVar("Value")
# per module: {kind: (its weights' identity and versions, the value built from them)}
_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kept(module: nn.Module, kind: str, build: Callable[[], Value],
         also: nn.Module | None = None) -> Value:
    """``build()``, a value derived from ``module``'s weights (and ``also``'s, a module trained
    with it), kept until one of them changes, and only out of training: in training mode it is
    built afresh each time. Fused AdamW updates a weight in place without bumping its version,
    so versions alone miss its steps: whoever runs ``module`` in training calls ``forget``
    (``recurrent._packed`` does)."""
    if module.training:
        return build()
    key = _identity(module) + (_identity(also) if also is not None else ())
    entries = _KEPT.setdefault(module, {})
    if kind not in entries or entries[kind][0] != key:
        entries[kind] = (key, build())
    return entries[kind][1]


def _identity(module: nn.Module) -> tuple:
    """Each weight's storage and version; a module without children read directly (a tweet
    asks twice, and ``parameters()``' walk cost 4 of the 9 us a call took)."""
    weights = module.parameters() if module._modules else module._parameters.values()
    return tuple((w.data_ptr(), w._version) for w in weights if w is not None)


def forget(module: nn.Module) -> None:
    """Drop what ``kept`` holds for ``module`` (its weights are about to change)."""
    _KEPT.pop(module, None)


class RowMemo:
    """Rows of ``width`` floats per key in a table that grows by doubling; the empty key ``b""``
    (a padding position) reads row 0, zeros. At most ``limit`` keys: past it the memo starts
    afresh. A batch's rows come back as one index into the table, where a dict of tensors cost a
    stack and a scatter per call (~55 us of a 2 ms tweet)."""

    def __init__(self, width: int, limit: int) -> None:
        self.width, self.limit = width, limit
        self.clear()

    def clear(self) -> None:
        self.rows: dict[Key, int] = {b"": 0}
        self.table: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows) - 1

    def missing(self, keys: Sequence[Key]) -> dict[Key, int]:
        """The keys not held, each with its first position in ``keys``; every key of ``keys``
        (the memo emptied first) where they would not fit."""
        new: dict[Key, int] = {}
        for position, key in enumerate(keys):
            if key not in self.rows:
                new.setdefault(key, position)
        if len(self.rows) + len(new) > self.limit + 1:
            self.clear()
            new = {}
            for position, key in enumerate(keys):
                if key:
                    new.setdefault(key, position)
        return new

    def add(self, keys: Sequence[Key], values: torch.Tensor) -> None:
        """Keep ``values`` ``[len(keys), width]`` as the rows of ``keys`` (keys not held)."""
        first = len(self.rows)
        end = first + len(keys)
        self._reserve(end, values.device)
        self.table[first:end] = values
        self.rows.update(zip(keys, range(first, end)))

    def gather(self, keys: Sequence[Key], device: torch.device) -> torch.Tensor:
        """The rows of ``keys`` (all held) ``[len(keys), width]``."""
        self._reserve(1, device)
        index = torch.from_numpy(np.array([self.rows[key] for key in keys], np.int64))
        return self.table[index if device.type == "cpu" else index.to(device)]

    def _reserve(self, rows: int, device: torch.device) -> None:
        held = 0 if self.table is None else len(self.table)
        if rows <= held:
            return
        # a normal tensor, not an inference one: written in inference mode, read out of it too
        with torch.inference_mode(False):
            table = torch.zeros((max(rows, 2 * held, 1024), self.width), device=device)
            if self.table is not None:
                table[:held] = self.table
        self.table = table
