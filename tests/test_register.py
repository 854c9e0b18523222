"""`profner register`: a model dir or an ensemble dir as an MLflow run and a registered version."""

from __future__ import annotations

import json

import pytest
import yaml

from profner_models.cli.main import main
from profner_models.predict import Predictor

TEXTS = ["Aplausos para las enfermeras y los médicos del hospital", "Hoy hace sol", ""]


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    """An ensemble of two smoke_rnn seeds as `profner train` writes it (with its estimate)."""
    tmp = tmp_path_factory.mktemp("register")
    config = {"task": "profner", "ensemble": {"method": "posterior", "members": [
        {"config": "smoke_rnn", "override": {"training": {"epochs": 1}}},
        {"config": "smoke_rnn", "override": {"training": {"epochs": 1, "seed": 14}}, "weight": 3}]}}
    (tmp / "ens.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp / "ens.yaml"), "--out", str(tmp / "ens"), "--no-progress",
                 "--jobs", "1"]) == 0
    return tmp / "ens"


def test_an_ensemble_is_one_run_with_a_child_per_member_and_a_version_that_predicts(
        ensemble_dir, tmp_path, capsys) -> None:
    import mlflow
    import pandas as pd

    from trainables import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    capsys.readouterr()
    assert main(["register", str(ensemble_dir), "--tracking-uri", uri, "--name", "ens"]) == 0
    printed = capsys.readouterr().out
    assert "registered ens version 1" in printed and "models:/ens/1" in printed
    client = tracking.client(uri)
    runs = client.search_runs([client.get_experiment_by_name("profner-models").experiment_id])
    parent = next(r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "ensemble")
    meta = json.loads((ensemble_dir / "meta.json").read_text())
    estimate = meta["unseen"]["estimate"]
    assert parent.data.metrics["estimate_f1_7b"] == pytest.approx(estimate["metrics"]["f1_7b"])
    assert parent.data.metrics["members_std_f1_7b"] == pytest.approx(
        estimate["members"]["std"]["f1_7b"])
    assert parent.data.params["method"] == "posterior"
    children = [r for r in runs if r.data.tags.get(tracking.PARENT_TAG) == parent.info.run_id]
    assert sorted(r.info.run_id for r in children) == sorted(
        json.loads(parent.data.tags["profner.members"]))
    for child in children:
        member = ensemble_dir / "members" / child.data.tags["member"]
        member_meta = json.loads((member / "meta.json").read_text())
        assert child.data.metrics["estimate_f1_7b"] == pytest.approx(
            member_meta["unseen"]["estimate"]["metrics"]["f1_7b"])
        assert child.data.params["training.seed"] == str(
            json.loads((member / "config.json").read_text())["training"]["seed"])
    assert sorted(r.data.metrics["weight"] for r in children) == [0.25, 0.75]
    mlflow.set_tracking_uri(uri)
    frame = mlflow.pyfunc.load_model("models:/ens/1").predict(pd.DataFrame({"text": TEXTS}))
    expected = [p.to_dict() for p in Predictor(ensemble_dir).predict(TEXTS)]
    assert [json.loads(e) for e in frame["entities"]] == [p["entities"] for p in expected]


def test_a_single_model_dir_registers_too_and_a_folder_that_is_none_is_named(
        ensemble_dir, tmp_path, capsys) -> None:
    from trainables import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    member = ensemble_dir / "members" / "1"
    assert main(["register", str(member), "--tracking-uri", uri]) == 0
    assert "registered profner-1 version 1" in capsys.readouterr().out
    client = tracking.client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("profner-models").experiment_id])
    assert run.data.tags[tracking.KIND_TAG] == "model" and run.data.params["training.seed"] == "14"
    assert main(["register", str(tmp_path), "--tracking-uri", uri]) == 2
    assert f"{tmp_path / 'meta.json'}: missing; {tmp_path} is not a model dir" in \
        capsys.readouterr().err
