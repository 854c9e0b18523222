"""Model dirs: save -> load gives the same model; partial, corrupt or foreign dirs fail clearly."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from rnn_support import sample_data, trained

from profner_models import artifacts
from profner_models.artifacts import ModelDirError, load
from profner_models.config import deep_merge
from profner_models.predict import Predictor


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    artifacts.save(trained().model, model_dir, extra_meta={"source": {"run": "test"}})
    return model_dir


def test_model_dir_holds_json_and_safetensors_only(saved):
    files = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    assert files == ["config.json", "labels.json", "meta.json", "model.safetensors",
                     "vocab/chars.json", "vocab/gazetteer.txt", "vocab/words.json"]
    meta = json.loads((saved / "meta.json").read_text())
    assert meta["version"] and meta["torch"] == torch.__version__
    assert meta["metrics"]["f1_7b"] == trained().best_metrics["f1_7b"]
    assert meta["source"] == {"run": "test"}
    assert meta["parameters"] == trained().model.num_parameters
    assert sorted(meta["sha256"]) == sorted(meta["files"]) and set(files) - set(meta["files"]) == {"meta.json"}


def test_load_restores_identical_weights_and_predictions(saved):
    original = trained().model
    restored = load(saved)
    recorded = {"model": {"backbone": original.network.backbone.recorded_config()}}
    assert restored.labels == original.labels
    assert restored.config == deep_merge(original.config, recorded)  # + what the data decided
    for (name, a), (_, b) in zip(original.network.state_dict().items(),
                                 restored.network.state_dict().items()):
        assert torch.equal(a, b), name
    texts = [doc.text for doc in sample_data()[1][:40]]
    assert ([p.to_dict() for p in Predictor(saved).predict(texts)]
            == [p.to_dict() for p in Predictor(original).predict(texts)])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # in the tensor data: still a well-formed safetensors file
    path.write_bytes(bytes(data))


def without_checksums(model_dir):
    meta = json.loads((model_dir / "meta.json").read_text())
    del meta["sha256"]
    (model_dir / "meta.json").write_text(json.dumps(meta))


def broken(saved, tmp_path, edit):
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    edit(copy)
    return copy


@pytest.mark.parametrize("edit,named", [
    (lambda d: (d / "meta.json").unlink(), "meta.json"),
    (lambda d: (d / "model.safetensors").unlink(), "model.safetensors"),
    (lambda d: (d / "vocab/words.json").unlink(), "words.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]),
     "model.safetensors"),
    (lambda d: (d / "meta.json").write_text(json.dumps(
        {**json.loads((d / "meta.json").read_text()), "version": "7.0.0"})), "meta.json"),
    (lambda d: (d / "meta.json").write_text(json.dumps(
        {**json.loads((d / "meta.json").read_text()), "format": 99})), "meta.json"),
    (lambda d: (d / "vocab/words.json").write_text('["only", "three", "words"]'), "words.json"),
    (lambda d: flip_a_byte(d / "model.safetensors"), "model.safetensors: SHA-256"),
    # a dir saved before the checksums: the edited vocabulary no longer fits the weights
    (lambda d: (without_checksums(d), (d / "vocab/words.json").write_text(
        '["only", "three", "words"]')), "model.safetensors: weights do not fit"),
])
def test_incomplete_corrupt_or_incompatible_dirs_are_refused(saved, tmp_path, edit, named):
    with pytest.raises(ModelDirError, match=named.replace(".", r"\.")):
        load(broken(saved, tmp_path, edit))


def test_missing_dir_is_refused(tmp_path):
    with pytest.raises(ModelDirError, match="nowhere"):
        load(tmp_path / "nowhere")


def test_a_folder_that_is_no_model_dir_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelDirError, match="not a model dir") as error:
        load(tmp_path)
    assert "sweep:" in str(error.value) and "models:/" in str(error.value)


def test_a_dir_saved_before_the_test_hook_left_the_schema_still_loads(saved, tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(saved, old)
    config_path = old / "config.json"
    config = json.loads(config_path.read_text())
    config["training"]["fail_at_epoch"] = None  # what every config.json held before 2026-12-04
    config_path.write_text(json.dumps(config))
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("sha256")  # as a dir edited by hand: checked without checksums
    (old / "meta.json").write_text(json.dumps(meta))
    assert "fail_at_epoch" not in load(old).config["training"]
