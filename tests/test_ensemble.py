"""Ensembles: members combined by averaged probabilities or by vote, saved and loaded as one
model dir, trained by `profner train` with their estimate on unseen text."""

from __future__ import annotations

import copy
import json
import tempfile
import time

import pytest
import yaml
from ensemble_support import assert_same_predictions, train_ensemble
from rnn_support import sample_data, smoke_config, trained

from profner_models import artifacts, ensemble
from profner_models.artifacts import ModelDirError
from profner_models.cli.main import main
from profner_models.documents import Prediction, Span
from profner_models.ensemble import Ensemble, vote
from profner_models.predict import Predictor
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of
from profner_models.training import fit

TEXTS = ["Aplausos para las enfermeras y los médicos del hospital 👏",
         "Mi vecino es camionero y está en paro desde marzo",
         "Hoy hace sol", ""]


@pytest.fixture(scope="module")
def members():
    train, dev = sample_data()
    other = fit(smoke_config(epochs=6, seed=15), list(train), list(dev), progress=False).model
    return [trained(6).model, other]


def test_a_span_needs_a_majority_and_overlaps_go_to_the_most_voted() -> None:
    nurse, nurses = Span(0, 9, "PROFESION", "enfermera"), Span(0, 10, "PROFESION", "enfermeras")
    paro = Span(20, 24, "SITUACION_LABORAL", "paro")
    found = [Prediction(1, 0.9, [nurse, paro]), Prediction(1, 0.7, [nurse]),
             Prediction(0, 0.2, [nurses])]
    equal = [1 / 3] * 3
    kept = vote(found, equal, needed=2 / 3, from_entities=True)
    assert kept.entities == [nurse] and kept.label == 1
    assert kept.probability == pytest.approx(0.6)
    assert vote(found, equal, needed=1 / 3, from_entities=True).entities == [nurse, paro]
    # the third member weighs as much as the other two: its span wins the overlap
    heavy = vote(found, [0.25, 0.25, 0.5], needed=0.5, from_entities=True)
    assert heavy.entities == [nurses] and heavy.probability == pytest.approx(0.5)


def test_copies_of_one_model_vote_as_the_model_does(members) -> None:
    one = Predictor(members[0]).predict(TEXTS)
    copies = Ensemble([members[0], copy.deepcopy(members[0])], method="vote")
    assert [p.entities for p in Predictor(copies).predict(TEXTS)] == [p.entities for p in one]


def test_averaged_probabilities_give_valid_spans_and_a_mean_probability(members) -> None:
    combined = Predictor(Ensemble(members, method="posterior", weights=[3, 1])).predict(TEXTS)
    singles = [Predictor(m).predict(TEXTS) for m in members]
    for index, (text, prediction) in enumerate(zip(TEXTS, combined)):
        assert prediction.probability == pytest.approx(
            0.75 * singles[0][index].probability + 0.25 * singles[1][index].probability, abs=1e-5)
        for span in prediction.entities:
            assert text[span.start:span.end] == span.text and span.type in ("PROFESION", "SITUACION_LABORAL")
        assert all(a.end <= b.start for a, b in zip(prediction.entities, prediction.entities[1:]))
    assert any(p.entities for p in combined)


def test_roles_take_the_7a_probability_from_some_members_and_the_tags_from_others(
        members, tmp_path) -> None:
    """Member 1 contributes only its 7a probability: the tags are member 0's alone (an ensemble
    of one tagger decodes its own marginals), the probability is member 1's, and the roles
    survive a save."""
    split = Ensemble(members, method="posterior", roles=[["tag"], ["classify"]])
    assert split.role_weights() == {"classify": [0.0, 1.0], "tag": [1.0, 0.0]}
    combined = Predictor(split).predict(TEXTS)
    tagger = Predictor(Ensemble([members[0], members[0]], method="posterior")).predict(TEXTS)
    labeller = Predictor(members[1]).predict(TEXTS)
    assert [p.entities for p in combined] == [p.entities for p in tagger]
    assert [p.probability for p in combined] == pytest.approx([p.probability for p in labeller],
                                                              abs=1e-5)
    saved = ensemble.save(split, tmp_path / "split")
    assert_same_predictions(Predictor(saved).predict(TEXTS), combined)
    for roles, message in (([["tag"], ["tag"]], "no member contributes the head role 'classify'"),
                           ([["tag"], ["cls"]], r"member 1: roles \['cls'\] must name"),
                           ([None], "one entry per member")):
        with pytest.raises(ValueError, match=message):
            Ensemble(members, method="posterior", roles=roles)
    with pytest.raises(ValueError, match="only method posterior"):
        Ensemble(members, method="vote", roles=[["tag"], ["classify"]])


def test_the_ensemble_scores_like_its_members_on_the_sample(members) -> None:
    _, dev = sample_data()
    gold = list(dev)
    scores = []
    for model in [*members, Ensemble(members, method="posterior")]:
        predicted = Predictor(model).predict([d.text for d in gold])
        docs = [p.as_document(d.id, d.text) for d, p in zip(gold, predicted)]
        scores.append(task_of(model.config).score(model, gold, docs)["f1_7b"])
    assert scores[2] >= min(scores[:2]) - 0.03, scores


def test_an_ensemble_dir_loads_and_predicts_as_it_was_saved(members, tmp_path) -> None:
    saved = ensemble.save(Ensemble(members, method="posterior"), tmp_path / "ens",
                          extra_meta={"note": "test"})
    assert (saved / "members" / "1" / "model.safetensors").is_file()
    again = Predictor(saved).predict(TEXTS)
    assert_same_predictions(again, Predictor(Ensemble(members)).predict(TEXTS))
    spec = saved / ensemble.ENSEMBLE_FILE
    spec.write_text(spec.read_text().replace("posterior", "vote"))
    with pytest.raises(ModelDirError, match="SHA-256"):
        Predictor(saved)


def test_members_must_share_the_labels(members) -> None:
    other = copy.deepcopy(members[1])
    other.labels = {**other.labels, "tag": list(reversed(other.labels["tag"]))}
    with pytest.raises(ValueError, match="member 1"):
        Ensemble([members[0], other])


@pytest.fixture(scope="module")
def member_dirs(members, tmp_path_factory):
    """The two members saved as held-out runs are (dev split held out), with an estimate."""
    root = tmp_path_factory.mktemp("members")
    dirs = []
    for index, model in enumerate(members):
        estimate = {"from": "test", "metrics": {"f1_7b": 0.1 * (index + 1)}}
        dirs.append(artifacts.save(model, root / f"m{index}", extra_meta={"unseen": {"estimate": estimate}}))
    return dirs


def test_profner_combine_makes_saved_models_one_model_with_its_estimate(member_dirs, members,
                                                                      tmp_path, capsys) -> None:
    out = tmp_path / "ens"
    sample = task_of(members[0].config).sample_dir()
    assert main(["combine", *map(str, member_dirs), "--out", str(out), "--weights", "1,3",
                 "--entity-threshold", "0.4", "--data", str(sample)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["members"] == 2 and printed["method"] == "posterior"
    expected = Ensemble(members, weights=[1, 3], entity_threshold=0.4)
    assert_same_predictions(Predictor(out).predict(TEXTS), Predictor(expected).predict(TEXTS))
    _, dev = sample_data()
    gold = apply_span_policy(list(dev), types=members[0].config["data"]["types"], overlap="keep_all")[0]
    found = Predictor(expected).predict([d.text for d in gold])
    score = task_of(expected.config).score(expected, gold, [p.as_document(d.id, d.text)
                                                          for d, p in zip(gold, found)])
    meta = json.loads((out / "meta.json").read_text())
    estimate = meta["unseen"]["estimate"]
    assert estimate["metrics"]["f1_7b"] == pytest.approx(score["f1_7b"]) == meta["metrics"]["f1_7b"]
    assert estimate["dev_docs"] == len(gold)
    assert estimate["members"]["mean"]["f1_7b"] == pytest.approx(0.15)  # the members' own
    assert meta["source"]["combined_from"] == [str(d.resolve()) for d in member_dirs]
    kept = json.loads((out / "members" / "1" / "meta.json").read_text())
    assert kept["unseen"]["estimate"]["metrics"]["f1_7b"] == 0.2


def test_profner_combine_refuses_what_it_cannot_measure_or_load(member_dirs, members, tmp_path,
                                                                capsys) -> None:
    sample = str(task_of(members[0].config).sample_dir())
    refit = copy.deepcopy(members[1])
    refit.config["data"]["train_on_dev"] = True
    refit_dir = artifacts.save(refit, tmp_path / "refit")
    out = tmp_path / "ens"
    assert main(["combine", str(member_dirs[0]), str(refit_dir), "--out", str(out),
                 "--data", sample]) == 1
    assert "dev splits differ" in capsys.readouterr().err and not out.exists()
    both_refits = [str(refit_dir), str(artifacts.save(refit, tmp_path / "refit2"))]
    assert main(["combine", *both_refits, "--out", str(out), "--data", sample]) == 1
    assert "train_on_dev true" in capsys.readouterr().err and not out.exists()
    assert main(["combine", *both_refits, "--out", str(out)]) == 0  # no estimate asked: fine
    assert json.loads((out / "meta.json").read_text())["unseen"] == {}
    assert main(["combine", str(out), str(member_dirs[0]), "--out", str(tmp_path / "e2")]) == 1
    assert "an ensemble dir; give its members" in capsys.readouterr().err
    assert main(["combine", str(member_dirs[0]), str(tmp_path), "--out", str(tmp_path / "e2")]) == 1
    assert f"{tmp_path}: not a model dir" in capsys.readouterr().err
    assert main(["combine", *map(str, member_dirs), "--out", str(member_dirs[0])]) == 2
    assert "holds one of the members" in capsys.readouterr().err
    assert main(["combine", *map(str, member_dirs), "--out", str(member_dirs[0].parent)]) == 2
    assert "holds one of the members" in capsys.readouterr().err
    assert main(["combine", *map(str, member_dirs), "--out", str(refit_dir)]) == 2
    assert "is not an ensemble dir; not overwritten" in capsys.readouterr().err
    assert (refit_dir / "meta.json").is_file() and all(d.is_dir() for d in member_dirs)
    assert main(["combine", *map(str, member_dirs), "--out", str(out)]) == 0  # an earlier ensemble
    assert main(["combine", *map(str, member_dirs), "--out", str(tmp_path / "e3"),
                 "--weights", "1"]) == 1
    assert "one positive weight per member" in capsys.readouterr().err
    assert not (tmp_path / "e2").exists() and not (tmp_path / "e3").exists()


def test_profner_train_builds_an_ensemble_with_its_estimate(tmp_path, capsys) -> None:
    """As the shipped ensembles are built: one member's tags, the other's 7a probability,
    the second trained with MEDDOPROF's sentences too."""
    from profner_models.sample import MEDDOPROF_SAMPLE

    extra = {"extra_train": [{"corpus": str(MEDDOPROF_SAMPLE)}]}
    config = {"task": "profner", "ensemble": {"method": "posterior", "members": [
        {"config": "smoke_rnn", "override": {"training": {"epochs": 2}}, "roles": ["tag"]},
        {"config": "smoke_rnn", "override": {"training": {"epochs": 2, "seed": 14}, "data": extra},
         "roles": ["classify"]}]}}
    estimate = train_ensemble(config, tmp_path)["unseen"]["estimate"]
    assert 0 <= estimate["metrics"]["f1_7b"] <= 1 and "f1_7b" in estimate["members"]["std"]
    spec = json.loads((tmp_path / "m" / ensemble.ENSEMBLE_FILE).read_text())
    assert spec["roles"] == [["tag"], ["classify"]]
    member_meta = json.loads((tmp_path / "m" / "members" / "1" / "meta.json").read_text())
    assert member_meta["unseen"]["estimate"]["train_docs"] > estimate["members"]["each"][0]["train_docs"]
    assert member_meta["unseen"]["estimate"]["metrics"]["f1_7b"] == \
        estimate["members"]["each"][1]["metrics"]["f1_7b"]
    assert len(Predictor(tmp_path / "m").predict(TEXTS)) == len(TEXTS)
    printed = json.loads(capsys.readouterr().out)
    assert printed["members"] == 2 and printed["method"] == "posterior"


def test_profner_train_keeps_the_held_out_runs_that_combine_measures_again(tmp_path,
                                                                          capsys) -> None:
    """``--held-out DIR``: the ensemble of the members' held-out runs, saved; combining its
    members on the dev split they held out gives the estimate the job wrote."""
    refit = {"training": {"epochs": 2}, "data": {"train_on_dev": True}}
    config = {"task": "profner", "ensemble": {"entity_threshold": 0.4, "members": [
        {"config": "smoke_rnn", "override": refit},
        {"config": "smoke_rnn", "override": {**refit, "training": {"epochs": 2, "seed": 14}}}]}}
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(config))
    out, held = tmp_path / "m", tmp_path / "held"
    for wrong in (out, out / "inner"):  # a save replaces its dir: never one inside the other
        assert main(["train", str(path), "--out", str(out), "--held-out", str(wrong)]) == 1
        assert "must lie apart from --out" in capsys.readouterr().err and not out.exists()
    assert main(["train", str(path), "--out", str(out), "--held-out", str(held),
                 "--no-progress", "--jobs", "1"]) == 0
    written = json.loads((out / "meta.json").read_text())["unseen"]["estimate"]
    kept = json.loads((held / "meta.json").read_text())
    assert kept["unseen"]["estimate"]["metrics"] == written["metrics"] == kept["metrics"]
    members = sorted((held / "members").iterdir())
    configs = [json.loads((d / "config.json").read_text()) for d in members]
    assert [c["data"]["train_on_dev"] for c in configs] == [False, False]
    assert [c["training"]["seed"] for c in configs] == [13, 14]
    capsys.readouterr()
    sample = str(task_of(configs[0]).sample_dir())
    assert main(["combine", *map(str, members), "--out", str(tmp_path / "again"),
                 "--entity-threshold", "0.4", "--data", sample]) == 0
    again = json.loads((tmp_path / "again" / "meta.json").read_text())["unseen"]["estimate"]
    assert again["metrics"] == pytest.approx(written["metrics"])


def test_held_out_needs_a_refit_and_replaces_no_other_dir(tmp_path, capsys) -> None:
    assert main(["train", "smoke_rnn", "--out", str(tmp_path / "m"), "--held-out",
                 str(tmp_path / "h"), "--set", "data.train_on_dev=false"]) == 1
    assert "trains no refit" in capsys.readouterr().err and not (tmp_path / "m").exists()
    precious = tmp_path / "data" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("keep me")
    assert main(["train", "smoke_rnn", "--out", str(tmp_path / "m"), "--held-out",
                 str(precious.parent), "--set", "data.train_on_dev=true"]) == 1
    assert "is not a model dir; not overwritten" in capsys.readouterr().err
    assert precious.read_text() == "keep me" and not (tmp_path / "m").exists()


def test_members_with_different_dev_splits_are_refused(tmp_path) -> None:
    config = {"task": "profner", "ensemble": {"members": [
        {"config": "smoke_rnn"}, {"config": "smoke_rnn", "override": {"data": {"dev_seed": 3}}}]}}
    path = tmp_path / "ens.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path), "--out", str(tmp_path / "m")]) == 1
    assert not (tmp_path / "m").exists()


def test_a_lower_entity_threshold_finds_at_least_as_many_words_in_entities(members) -> None:
    _, dev = sample_data()
    texts = [d.text for d in dev]
    counts = []
    for threshold in (0.5, 0.3, 0.1):
        found = Predictor(Ensemble(members, entity_threshold=threshold)).predict(texts)
        counts.append(sum(s.end - s.start for p in found for s in p.entities))
    assert counts[0] <= counts[1] <= counts[2] and counts[2] > counts[0], counts


def test_the_shipped_ensembles_members_take_one_held_out_run_each():
    """System 1 ships with a 3-seed estimate; as a member of ``ensemble`` it takes one held-out
    run (the ensemble scores its own held-out members), so the job is not three times longer."""
    from profner_models.config import load_config
    from profner_models.unseen import member_recipes

    assert load_config("transformer_e5")["training"]["estimate_seeds"] == 3
    recipes = member_recipes(load_config("ensemble"))
    assert [r["model"]["backbone"]["name"] for r in recipes] == ["transformer.v1"] + ["rnn.v1"] * 8
    assert [r["training"]["estimate_seeds"] for r in recipes] == [1] * 9
    assert [r["training"]["seed"] for r in recipes] == [13, 13, 14, 15, 16, 17, 13, 14, 15]


def test_the_shipped_ensembles_read_e5_states_for_tags_and_meddoprof_runs_for_7a():
    """``ensemble``: tags from System 1 and the rnn_e5 runs, 7a from System 1 and the runs with
    MEDDOPROF's sentences; ``ensemble_rnn``: three rnn_e5 seeds for both outputs."""
    from profner_models.config import load_config
    from profner_models.ensemble import ensemble_block
    from profner_models.unseen import member_recipes

    def described(name: str) -> list[tuple]:
        config = load_config(name)
        return [(r["model"]["backbone"]["name"],
                 bool((r["model"]["backbone"].get("contextual") or {}).get("encoder")),
                 bool(r["data"]["extra_train"]), member.get("roles"))
                for member, r in zip(ensemble_block(config)["members"], member_recipes(config))]

    rnn_e5, meddoprof = ("rnn.v1", True, False, ["tag"]), ("rnn.v1", False, True, ["classify"])
    assert described("ensemble") == [("transformer.v1", False, False, None)] + [rnn_e5] * 5 + [meddoprof] * 3
    assert described("ensemble_rnn") == [("rnn.v1", True, False, None)] * 3


def test_profner_combine_takes_each_members_roles(member_dirs, members, tmp_path, capsys) -> None:
    """``--roles all,classify``: the second member adds its 7a probability and nothing to the
    tags, as an ensemble config's ``roles`` does; a role the task lacks is named."""
    out = tmp_path / "ens"
    assert main(["combine", *map(str, member_dirs), "--out", str(out), "--roles", "all,classify"]) == 0
    assert json.loads((out / ensemble.ENSEMBLE_FILE).read_text())["roles"] == [None, ["classify"]]
    expected = Ensemble(members, roles=[None, ["classify"]])
    found = Predictor(out).predict(TEXTS)
    assert_same_predictions(found, Predictor(expected).predict(TEXTS))
    tagger = Predictor(Ensemble([members[0], members[0]])).predict(TEXTS)  # member 0's tags alone
    assert [p.entities for p in found] == [p.entities for p in tagger]
    assert main(["combine", *map(str, member_dirs), "--out", str(tmp_path / "e2"),
                 "--roles", "all,cls"]) == 1
    assert "member 1: roles ['cls'] must name some of the task's head roles" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["combine", *map(str, member_dirs), "--out", str(tmp_path / "e3"), "--roles", "all,"])
    assert "one entry per member" in capsys.readouterr().err


def test_members_fit_in_two_processes_and_a_refit_scores_dev_after_its_last_epoch(
        tmp_path, monkeypatch) -> None:
    """``jobs=2``: the members' refits and held-out runs go through this process and a worker,
    the next fit to whichever is free; each member gets its own held-out run (dev out of its
    training: its estimate) and check. A refit that keeps its last epoch scores dev, text it
    learns from, only after that epoch. A worker's model is loaded only once this process
    fits no more (a load draws from torch's generator, which this process's fit reads): the
    first fit here waits until the worker has saved one, so a load beside it would be seen."""
    from profner_models import unseen
    from profner_models.unseen import member_recipes, train_members

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the workers' dirs go
    fits: list[tuple[float, float]] = []
    loads: list[float] = []

    def fit_here(*args, **kwargs):
        started = time.monotonic()
        result = fit(*args, **kwargs)
        while not fits and not list(tmp_path.glob("profner-members-*/*/meta.json")):
            assert time.monotonic() - started < 300, "no worker saved a model"
            time.sleep(0.2)
        time.sleep(1.0 if not fits else 0.0)  # a feeder thread that loads at once would, now
        fits.append((started, time.monotonic()))
        return result

    def load(*args, **kwargs):
        loads.append(time.monotonic())
        return artifacts_load(*args, **kwargs)

    artifacts_load = artifacts.load
    monkeypatch.setattr(unseen, "fit", fit_here)
    monkeypatch.setattr(artifacts, "load", load)
    refit = {"training": {"epochs": 2, "select": "last"}, "data": {"train_on_dev": True}}
    seeded = copy.deepcopy(refit)
    seeded["training"]["seed"] = 14
    config = {"task": "profner", "ensemble": {"members": [
        {"config": "smoke_rnn", "override": refit}, {"config": "smoke_rnn", "override": seeded}]}}
    members = train_members(member_recipes(config), None, progress=False, jobs=2)
    assert fits and loads and min(loads) > max(end for _, end in fits)
    for member, seed in zip(members, (13, 14)):
        held, shipped = member.holdout.model.config, member.result.model.config
        assert held["data"]["train_on_dev"] is False and shipped["data"]["train_on_dev"] is True
        assert held["training"]["seed"] == shipped["training"]["seed"] == seed
        assert ["f1_7b" in row for row in member.result.history] == [False, True]
        assert all("f1_7b" in row for row in member.holdout.history)
        assert member.unseen["estimate"]["metrics"]["f1_7b"] == member.holdout.history[-1]["f1_7b"]
        assert member.unseen["check"]["passed"]  # (the sample is the training text: no check text)
