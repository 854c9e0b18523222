"""Device selection and resumable fits: a fit continued from an epoch's checkpoint gives the
same per-epoch metrics on CPU as one never interrupted, because the checkpoint holds the
optimizer, scheduler and RNG states as well as the weights."""

from __future__ import annotations

import shutil

import pytest
import torch
from rnn_support import sample_data, smoke_config

from profner_models.artifacts import load
from profner_models.config import ConfigError
from profner_models.training import RESUME_DIR, RESUME_STATE, fit, resolve_device

EPOCHS = 4
KEYS = ("loss", "f1_7a", "f1_7b", "train_loss")


def checkpointing(root):
    def save(event):
        event.checkpoint(root / f"epoch{event.epoch}")
    return save


def test_a_resumed_fit_repeats_the_uninterrupted_one(tmp_path):
    train, dev = sample_data()
    config = smoke_config(epochs=EPOCHS)
    whole = fit(config, list(train), list(dev), callbacks=[checkpointing(tmp_path)], progress=False)
    resumed = fit(config, list(train), list(dev), progress=False, resume_from=tmp_path / "epoch2")
    assert [h["epoch"] for h in resumed.history] == list(range(1, EPOCHS + 1))
    for before, after in zip(whole.history, resumed.history):
        assert {k: before[k] for k in KEYS} == {k: after[k] for k in KEYS}
    assert resumed.best_epoch == whole.best_epoch
    for name, value in whole.model.network.state_dict().items():
        torch.testing.assert_close(resumed.model.network.state_dict()[name], value)


def test_a_fit_resumed_inside_its_weight_averaging_window_keeps_the_same_mean(tmp_path):
    train, dev = sample_data()
    config = smoke_config(epochs=EPOCHS, select="last", average_last=3)
    whole = fit(config, list(train), list(dev), callbacks=[checkpointing(tmp_path)], progress=False)
    resumed = fit(config, list(train), list(dev), progress=False, resume_from=tmp_path / "epoch3")
    assert {k: resumed.best_metrics[k] for k in KEYS} == {k: whole.best_metrics[k] for k in KEYS}
    for name, value in whole.model.network.state_dict().items():
        torch.testing.assert_close(resumed.model.network.state_dict()[name], value)


def test_the_optimizer_state_is_restored_not_started_afresh(tmp_path):
    train, dev = sample_data()
    config = smoke_config(epochs=3)
    whole = fit(config, list(train), list(dev), callbacks=[checkpointing(tmp_path)], progress=False)
    state = torch.load(tmp_path / "epoch1" / RESUME_DIR / RESUME_STATE, weights_only=True)
    assert state["optimizer"]["state"] and state["step"] > 0 and state["epoch"] == 1
    fresh = {**state, "optimizer": {**state["optimizer"], "state": {}}}
    shutil.copytree(tmp_path / "epoch1", tmp_path / "no-moments")
    torch.save(fresh, tmp_path / "no-moments" / RESUME_DIR / RESUME_STATE)
    forgetful = fit(config, list(train), list(dev), progress=False, resume_from=tmp_path / "no-moments")
    assert forgetful.history[2]["train_loss"] != whole.history[2]["train_loss"]


def test_a_checkpoint_is_the_best_model_so_far_and_loads_for_prediction(tmp_path):
    train, dev = sample_data()
    result = fit(smoke_config(epochs=EPOCHS), list(train), list(dev),
                 callbacks=[checkpointing(tmp_path)], progress=False)
    model = load(tmp_path / f"epoch{EPOCHS}")
    assert model.metrics["f1_7b"] == result.best_metrics["f1_7b"]
    for name, value in result.model.network.state_dict().items():
        torch.testing.assert_close(model.network.state_dict()[name], value)


def test_a_missing_resume_state_is_named(tmp_path):
    train, dev = sample_data()
    with pytest.raises(ValueError, match="resume/model.safetensors: missing"):
        fit(smoke_config(epochs=2), list(train), list(dev), progress=False, resume_from=tmp_path)


def test_device_auto_is_the_gpu_when_there_is_one_and_an_absent_device_fails_at_the_start():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert resolve_device("auto") == torch.device("cuda" if count else "cpu")
    absent = f"cuda:{count}"  # one past the last device, on any machine
    with pytest.raises(ConfigError, match=rf"training\.device: '{absent}' asked for, but torch "
                                          rf"sees {count}"):
        resolve_device(absent)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_device("cpu", "fp16")
    train, dev = sample_data()
    with pytest.raises(ConfigError, match="training.device"):
        fit(smoke_config(device=absent), list(train), list(dev), progress=False)


def test_bf16_autocast_trains_on_the_cpu():
    train, dev = sample_data()
    result = fit(smoke_config(epochs=2, precision="bf16"), list(train), list(dev), progress=False)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in result.history)


def test_batches_made_by_a_loader_worker_train_the_same_model():
    train, dev = sample_data()
    here = fit(smoke_config(epochs=2), list(train), list(dev), progress=False)
    worker = fit(smoke_config(epochs=2, loader_workers=1), list(train), list(dev), progress=False)
    assert [h["train_loss"] for h in here.history] == [h["train_loss"] for h in worker.history]
