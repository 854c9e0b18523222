"""Windows over long word sequences: coverage, budget, overlap, and exact merging."""

from __future__ import annotations

import random

import pytest

from profner_models.text.windows import Window, merge, owners, plan_windows


def test_short_sequence_is_one_window() -> None:
    assert plan_windows([1, 2, 1], max_units=8) == [Window(0, 3)]
    assert plan_windows([], max_units=8) == [Window(0, 0)]


def test_windows_step_by_stride_and_overlap() -> None:
    windows = plan_windows([1] * 10, max_units=4, stride=2)
    assert windows == [Window(0, 4), Window(2, 6), Window(4, 8), Window(6, 10)]
    no_overlap = plan_windows([1] * 10, max_units=4, stride=4)
    assert no_overlap == [Window(0, 4), Window(4, 8), Window(8, 10)]


def test_word_longer_than_window_sits_alone() -> None:
    windows = plan_windows([1, 9, 1], max_units=4, stride=2)
    assert windows == [Window(0, 1), Window(1, 2), Window(2, 3)]


def test_each_word_goes_to_its_most_central_window() -> None:
    windows = plan_windows([1] * 10, max_units=4, stride=2)
    # Word 2 has the text start before it and 1 unit after it in window 0, but sits on the
    # left edge of window 1; word 3 has at least one unit each side only in window 1.
    assert owners(windows, [1] * 10, 4) == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("seed", range(200))
def test_random_sequences_merge_every_word_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randrange(0, 60)
    costs = [rng.choice([0, 1, 1, 1, 2, 3, 7]) for _ in range(n)]
    max_units = rng.randrange(1, 16)
    stride = rng.randrange(1, max_units + 1)
    windows = plan_windows(costs, max_units, stride)

    clipped = [min(c, max_units) for c in costs]
    for window in windows:
        assert len(window) >= (1 if n else 0)
        assert sum(clipped[window.start : window.end]) <= max_units
    assert windows[0].start == 0 and windows[-1].end == n
    for before, after in zip(windows, windows[1:]):
        assert before.start < after.start <= before.end  # progress, no gap
    # A window's output names its words; the merge must give back each word once, in order.
    outputs = [[(word, k) for word in range(w.start, w.end)] for k, w in enumerate(windows)]
    merged = merge(windows, outputs, costs, max_units)
    assert [word for word, _ in merged] == list(range(n))


def test_merge_keeps_spans_when_window_edges_are_wrong() -> None:
    """Words on a window's inner edge (no context one side) are mispredicted there; the
    merge takes them from a window where they are central, so every span survives once."""
    tags = ["O", "B", "I", "I", "O", "O", "B", "I", "O", "B", "I", "I", "I", "O"]
    costs = [1] * len(tags)
    windows = plan_windows(costs, max_units=6, stride=3)
    assert len(windows) == 4
    outputs = []
    for w in windows:
        out = tags[w.start : w.end]
        if w.start > 0:
            out[0] = "X"
        if w.end < len(tags):
            out[-1] = "X"
        outputs.append(out)
    assert merge(windows, outputs, costs, 6) == tags


def test_merge_rejects_outputs_of_the_wrong_length() -> None:
    windows = plan_windows([1] * 6, max_units=4, stride=2)
    with pytest.raises(ValueError, match="window Window"):
        merge(windows, [["a"] * 4, ["b"] * 3], [1] * 6, 4)
    with pytest.raises(ValueError, match="stride"):
        plan_windows([1] * 6, max_units=4, stride=5)
