"""Train an ensemble config as a user does (``profner train CONFIG``) inside a test."""

from __future__ import annotations

import json
from pathlib import Path

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
