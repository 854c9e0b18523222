"""What models keep out of training (``profner_models.models.memo``)."""

import pytest
import torch
from torch import nn

from profner_models.models.memo import RowMemo, kept


def test_a_row_memo_grows_past_its_first_table_and_starts_afresh_past_its_limit():
    memo = RowMemo(width=2, limit=1500)
    keys = [str(i).encode() for i in range(1, 1201)]  # more rows than the first table holds (1,024)
    values = torch.arange(2400, dtype=torch.float32).view(1200, 2)
    assert memo.missing(keys + [b"", b"7"]) == {key: i for i, key in enumerate(keys)}
    memo.add(keys, values)
    assert len(memo) == 1200
    rows = memo.gather([b"5", b"", b"1200"], torch.device("cpu"))
    assert torch.equal(rows, torch.stack([values[4], torch.zeros(2), values[1199]]))
    more = [str(i).encode() for i in range(2000, 2400)]  # 1,600 keys would pass the limit of 1,500
    assert list(memo.missing(more + [b"3", b""])) == more + [b"3"]
    assert len(memo) == 0


def test_kept_values_follow_the_weights_and_are_not_kept_in_training():
    layer = nn.Linear(2, 2).eval()
    built = []

    def build() -> float:
        built.append(1)
        return float(layer.weight.detach().sum())

    first = kept(layer, "sum", build)
    assert kept(layer, "sum", build) == first and len(built) == 1
    with torch.no_grad():
        layer.weight.add_(1.0)  # bumps the version: built again
    assert kept(layer, "sum", build) == pytest.approx(first + 4) and len(built) == 2
    layer.train()
    kept(layer, "sum", build)
    kept(layer, "sum", build)
    assert len(built) == 4
