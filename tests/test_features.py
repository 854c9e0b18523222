"""Length bucketing: every index once, seeded, and far less padding than random batches."""

from __future__ import annotations

import random

from profner_models.text.features import bucket_batches


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_bucketing_covers_every_index_once_and_cuts_padding():
    rng = random.Random(1)
    lengths = [rng.randint(1, 80) for _ in range(1000)]
    bucketed = bucket_batches(lengths, 16, True, random.Random(0))
    plain = bucket_batches(lengths, 16, True, random.Random(0), bucketing=False)
    for batches in (bucketed, plain):
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert all(len(b) <= 16 for b in batches)
    assert _padding(bucketed, lengths) < 0.2 * _padding(plain, lengths)
    assert bucketed == bucket_batches(lengths, 16, True, random.Random(0))
    assert bucketed != bucket_batches(lengths, 16, True, random.Random(1))
