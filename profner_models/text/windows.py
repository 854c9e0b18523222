"""Overlapping windows over a sequence of words, and merging per-word outputs back.

A transformer sees at most N word pieces; a long tweet or a MEDDOPROF clinical case has more.
The sequence is cut into windows of whole words whose cost (pieces per word, or 1 per word
for word-level windows) fits ``max_units``; consecutive windows start ``stride`` units apart,
so they overlap by ``max_units - stride`` units. Every word lies in at least one window.

Merging gives every word the output of the one window where it is most central, i.e. where
it has the most context on its poorer side: ``min(units before it, units after it)`` within
the window, a document edge counting as unlimited context (the rule of BERT's SQuAD
"max context" doc spans). Each word is taken exactly once, so spans decoded from the merged
sequence are neither lost nor duplicated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """Words ``start`` (inclusive) to ``end`` (exclusive) of the sequence."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def clipped_costs(costs: Sequence[int], max_units: int) -> list[int]:
    """Costs as windows count them: a word longer than a window fills one window alone (the
    caller keeps its first ``max_units`` pieces)."""
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    if any(cost < 0 for cost in costs):
        raise ValueError(f"word costs must be >= 0, got {list(costs)}")
    return [min(cost, max_units) for cost in costs]


def plan_windows(costs: Sequence[int], max_units: int, stride: int | None = None) -> list[Window]:
    """Windows covering every word; ``stride`` (default ``max_units // 2``) is the step in
    units between window starts. An empty sequence gets one empty window."""
    costs = clipped_costs(costs, max_units)
    stride = max(1, max_units // 2) if stride is None else stride
    if not 1 <= stride <= max_units:
        raise ValueError(f"stride must be in 1..{max_units}, got {stride}")
    offsets = [0, *accumulate(costs)]
    n = len(costs)
    windows: list[Window] = []
    start = 0
    while True:
        end = start + 1 if start < n else start
        while end < n and offsets[end + 1] - offsets[start] <= max_units:
            end += 1
        windows.append(Window(start, end))
        if end >= n:
            return windows
        step = start + 1
        while step < end and offsets[step] - offsets[start] < stride:
            step += 1
        start = step


def owners(windows: Sequence[Window], costs: Sequence[int], max_units: int) -> list[int]:
    """For each word, the index of the window where it is most central (earliest on ties)."""
    costs = clipped_costs(costs, max_units)
    offsets = [0, *accumulate(costs)]
    n = len(costs)
    best: list[tuple[float, int]] = [(-1.0, -1)] * n
    for index, window in enumerate(windows):
        if window.start < 0 or window.end > n or window.start > window.end:
            raise ValueError(f"window {window} does not fit a sequence of {n} words")
        for word in range(window.start, window.end):
            left = math.inf if window.start == 0 else offsets[word] - offsets[window.start]
            right = math.inf if window.end == n else offsets[window.end] - offsets[word + 1]
            score = min(left, right)
            if score > best[word][0]:
                best[word] = (score, index)
    uncovered = [word for word, (_, index) in enumerate(best) if index < 0]
    if uncovered:
        raise ValueError(f"words {uncovered} are in no window")
    return [index for _, index in best]


def merge(
    windows: Sequence[Window], outputs: Sequence[Sequence[T]], costs: Sequence[int], max_units: int
) -> list[T]:
    """Per-word outputs of the whole sequence from per-window outputs (one item per word of
    each window), each word taken from the window that owns it."""
    if len(outputs) != len(windows):
        raise ValueError(f"{len(outputs)} window outputs for {len(windows)} windows")
    for window, output in zip(windows, outputs):
        if len(output) != len(window):
            raise ValueError(f"window {window} has {len(window)} words but {len(output)} outputs")
    return [
        outputs[index][word - windows[index].start]
        for word, index in enumerate(owners(windows, costs, max_units))
    ]
