"""Typed configs: every block checked against its schema, defaults filled, errors naming the key
path (and the nearest valid name), registered names versioned; the shipped configs pass."""

from __future__ import annotations

import pytest

from profner_models.cli.main import main
from profner_models.config import CONFIG_DIR, ConfigError, apply_overrides, load_config
from profner_models.ensemble import ensemble_block, member_config
from profner_models.tasks import validate

SHIPPED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


ENSEMBLES = [name for name in SHIPPED if "ensemble" in load_config(name)]


@pytest.mark.parametrize("name", [name for name in SHIPPED if name not in ENSEMBLES])
def test_shipped_configs_pass_and_come_back_complete(name):
    config = validate(load_config(name))
    assert config["model"]["backbone"]["name"].endswith(".v1")
    assert all(block["name"].endswith(".v1") for block in config["model"]["heads"].values())
    assert config["training"]["select"]  # the task's metric when the file says nothing
    assert validate(config) == config  # checking a checked config changes nothing


@pytest.mark.parametrize(("override", "message"), [
    ("training.epoch=1", r"training\.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ("training.epochs=0", r"training\.epochs: .*greater than or equal to 1.*\(got 0\)"),
    ("training.epochs=abc", r"training\.epochs: .*integer.*'abc'"),
    ("training.lr=-1", r"training\.lr: .*greater than 0"),
    ("model.backbone.encoder.cell=grux", r"model\.backbone\.encoder\.cell: .*'gru' or 'lstm'.*'grux'"),
    ("model.backbone.words.tunning=delta", r"model\.backbone\.words\.tunning: unknown key \(did you mean 'tuning'\?\)"),
    ("model.heads.tag.name=crff", r"model\.heads\.tag\.name: unknown head 'crff' \(did you mean 'crf\.v1'\?"),
    ("data.scheme=BIOES", r"data\.scheme: .*'BIOES'"),
    ("task=profnr", r"task: unknown task 'profnr' \(did you mean 'profner'\?"),
    # the augmentation's scorer is a registered part: refused here, not once the corpus is read
    ("data.augment={types: [PROFESION], scorer: {name: ngram, smoothing: kn}}",
     r"data\.augment\.scorer\.smoothing: unknown key"),
    ("data.augment={types: [PROFESION], scorer: {name: bert}}",
     r"data\.augment\.scorer\.name: .*'bert'"),
])
def test_a_bad_key_or_value_is_refused_with_its_path(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(load_config("smoke_rnn"), [override]))


def test_an_augmentation_scorer_comes_back_versioned_with_its_defaults():
    config = validate(apply_overrides(load_config("smoke_rnn"), ["data.augment={types: [PROFESION]}"]))
    assert config["data"]["augment"]["scorer"] == {"name": "ngram.v1", "order": 3}
    assert validate(config) == config


def test_profner_train_refuses_a_misspelled_key_before_training(tmp_path, capsys):
    code = main(["train", "smoke_rnn", "--out", str(tmp_path / "m"), "--set", "training.epoch=1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "training.epoch: unknown key (did you mean 'epochs'?)" in err
    assert not (tmp_path / "m").exists()


def test_defaults_come_from_the_schemas_and_old_unversioned_names_mean_v1():
    config = validate({"task": "profner", "model": {"backbone": {"name": "rnn"},
                                                     "heads": {"tag": {"name": "crf"}}}})
    words = config["model"]["backbone"]["words"]
    assert (words["dim"], words["tuning"], words["dropout"]) == (300, "full", 0.0)
    assert config["model"]["backbone"]["name"] == "rnn.v1"
    assert config["model"]["heads"]["tag"] == {"name": "crf.v1", "layers": 1, "size": 128,
                                               "activation": "relu", "dropout": 0.3}
    assert config["training"]["select"] == "f1_7b" and config["data"]["dev_fraction"] == 0.2
    meddoprof = validate({**load_config("smoke_meddoprof")})
    assert meddoprof["training"]["select"] == "f1_mean"
    assert meddoprof["data"]["window"] == {"size": 32, "stride": 16, "train_stride": 32}


def test_head_roles_are_the_task_s():
    config = load_config("smoke_rnn")
    config["model"]["heads"]["summary"] = {"name": "pooled_linear"}
    with pytest.raises(ConfigError, match=r"model\.heads: unknown head role 'summary'"):
        validate(config)


def test_a_meddoprof_window_stride_longer_than_the_window_is_refused():
    config = apply_overrides(load_config("smoke_meddoprof"), ["data.window.stride=64"])
    with pytest.raises(ConfigError, match=r"data\.window: .*stride must be in 1\.\.32"):
        validate(config)


@pytest.mark.parametrize("name", ENSEMBLES)
def test_shipped_ensembles_name_members_that_pass(name):
    config = load_config(name)
    block = ensemble_block(config)
    assert len(block["members"]) >= 2
    for member in block["members"]:
        checked = validate(member_config(member, config.get("task")))
        assert checked["data"]["train_on_dev"]  # shipped: refits, each with its estimate


def test_a_bad_ensemble_block_names_its_key():
    with pytest.raises(ConfigError, match=r"ensemble\.method"):
        ensemble_block({"ensemble": {"method": "average", "members": [{"config": "rnn"}] * 2}})
    with pytest.raises(ConfigError, match=r"ensemble\.members"):
        ensemble_block({"ensemble": {"members": [{"config": "rnn"}]}})
