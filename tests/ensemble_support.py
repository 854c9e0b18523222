"""Train an ensemble config as a user does (``profner train CONFIG``) inside a test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from profner_models.cli.main import main


def train_ensemble(config: dict, tmp_path: Path) -> dict:
    """``config`` written to a file and trained into ``tmp_path / "m"``; its meta.json, after
    checking it is an ensemble's with one estimate per member."""
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(tmp_path / "m"), "--no-progress",
                 "--jobs", "1"]) == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    members = config["ensemble"]["members"]
    assert meta["kind"] == "ensemble"
    assert len(meta["unseen"]["estimate"]["members"]["each"]) == len(members)
    return meta


def assert_same_predictions(found, expected) -> None:
    """The same labels and spans; a probability to float rounding (a sum's order moves with
    the thread count an earlier test left, or a model's weights' layout once reloaded)."""
    assert [(p.label, p.entities) for p in found] == [(p.label, p.entities) for p in expected]
    assert [p.probability for p in found] == pytest.approx([p.probability for p in expected], abs=1e-6)
