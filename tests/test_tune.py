"""A real smoke sweep (local Ray, 2 CPUs, bundled sample) and what it leaves behind:
Tune trials, MLflow parent + child runs, the exported best model, the report, the narrowed
space and a refit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tune_support import all_runs, client, kill_ray_under, short_temp_dir

from search_spaces import load
from trainables.tracking import curve

pytestmark = pytest.mark.slow
NUM_SAMPLES = 4


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The smoke sweep, run in-process on a private local Ray (2 CPUs) shared with the refit."""
    import contextlib
    import io

    import ray

    from trainables.runner import SweepOptions, run_sweep

    tmp = tmp_path_factory.mktemp("sweep")
    ray_tmp = short_temp_dir("rt-tune-")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = run_sweep(SweepOptions(
                # seed 14: TPE's first draws include a config still at F1 0 after an epoch
                # and one past 0.5, so ASHA has a stop to make at the first rung by a wide
                # margin, whatever small numeric drift (seed 13's four all stood at 0.0 after
                # one epoch, since the C GRU's float order: no rung could judge them)
                space="smoke", num_samples=NUM_SAMPLES, max_concurrent=1, num_cpus=2, seed=14,
                name="sweep", storage=str(tmp / "runs"), ray_temp_dir=str(ray_tmp),
                tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", export=str(tmp / "best_model"),
                export_frontier=str(tmp / "frontier")))
        yield tmp, result
    finally:
        ray.shutdown()
        kill_ray_under(ray_tmp)


def test_every_trial_ran_or_was_stopped(sweep) -> None:
    tmp, _ = sweep
    state = json.loads((tmp / "runs" / "sweep" / "profner_sweep.json").read_text())
    assert state["status"] == "finished"
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(tmp / "runs" / "sweep"))
    assert len(analysis.trials) == NUM_SAMPLES
    from trainables.results import ran_all_epochs
    from trainables.runner import max_epochs as asha_max_t

    max_epochs = asha_max_t(load("smoke"))
    assert max_epochs == 3
    ran = []
    for trial in analysis.trials:
        assert trial.status == "TERMINATED"
        epochs = trial.last_result["epoch"]
        ran.append(epochs)
        # Completed trials ran every epoch; ASHA-stopped ones stopped at a rung (1, 2).
        assert epochs == max_epochs or epochs in (1, 2)
        assert ran_all_epochs(trial.last_result) == (epochs == max_epochs)
    assert min(ran) < max_epochs, f"ASHA stopped no trial early: epochs run {ran}"
    assert max(ran) == max_epochs


def test_tpe_proposes_other_configs_than_random_search_after_the_initial_points() -> None:
    """HyperOptSearch as the runner builds it: after ``n_initial_points`` random trials, TPE
    proposes from what it saw, not what the random sampler (same seed) would draw next."""
    from ray.tune.search.hyperopt import HyperOptSearch

    space = load("smoke")

    def searcher(initial: int) -> HyperOptSearch:
        return HyperOptSearch(space=space.to_hyperopt(), metric="f1_7b", mode="max",
                              n_initial_points=initial, random_state_seed=13)

    tpe, random_only = searcher(3), searcher(100)
    for i in range(3):
        first, second = tpe.suggest(str(i)), random_only.suggest(str(i))
        assert first == second  # the initial points are the same random draws
        for search in (tpe, random_only):  # lr near 0.02 scores best
            lr = first["training"]["lr"]
            search.on_trial_complete(str(i), {"f1_7b": 1.0 - abs(lr - 0.02)})
    proposals = [tpe.suggest(f"t{i}") for i in range(3)]
    draws = [random_only.suggest(f"t{i}") for i in range(3)]
    assert proposals != draws


def test_mlflow_has_one_parent_and_a_child_per_trial(sweep) -> None:
    tmp, _ = sweep
    runs = all_runs(tmp)
    parents = [r for r in runs if r.data.tags.get("profner.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("profner.kind") == "trial"]
    assert len(parents) == 1 and len(children) == NUM_SAMPLES
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["num_trials"] == NUM_SAMPLES
    assert parent.data.tags["study"] == "smoke"
    c = client(tmp)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        tags = child.data.tags
        assert tags["study"] == "smoke" and tags["search_space"].endswith("smoke.yaml")
        assert tags["seed"] == "13" and tags["git_commit"] and tags["node_id"]
        assert tags["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
        planned = 3  # smoke.yaml's epochs; ASHA's stops end a trial before them
        assert tags["profner.stopped_by"] == (
            "completed" if int(tags["profner.epochs_run"]) == planned else "scheduler")
        params = child.data.params
        assert "training.lr" in params and "model.backbone.encoder.cell" in params
        assert 0.06 <= float(params["training.lr"]) <= 0.15
        history = c.get_metric_history(child.info.run_id, curve("f1_7b"))
        assert [m.step for m in history] == list(range(1, int(tags["profner.epochs_run"]) + 1))
        assert child.data.metrics["best_f1_7b"] == max(m.value for m in history)
        # The run page charts prefixed keys first, sections in name order: the dev curves,
        # the other per-epoch values, then the single-value best_* bars (tracking.py).
        keys = set(child.data.metrics)
        assert {k for k in keys if "/" not in k} == {k for k in keys if k.startswith("best_")}
        assert {curve(k.removeprefix("best_")) for k in keys if k.startswith("best_")} <= keys
        assert {"dev/f1_7b", "dev/f1_7a", "dev/loss", "per_epoch/train_loss"} <= keys
    # Parent: best metric, search space, report plots and the best model dir as artifacts.
    best = max(child.data.metrics["best_f1_7b"] for child in children)
    assert parent.data.metrics["best_f1_7b"] == pytest.approx(best)
    artifacts = {a.path for a in c.list_artifacts(parent.info.run_id)}
    assert {"search_space", "report", "best_model"} <= artifacts
    report = {Path(a.path).name for a in c.list_artifacts(parent.info.run_id, "report")}
    assert report == {"hyperparameters.png", "parallel_coordinates.png", "learning_curves.png",
                      "frontier.png", "trials.csv"}
    versions = c.search_model_versions("name='profner-smoke'")
    assert len(versions) == 1 and versions[0].tags["trial_id"] == parent.data.tags["best_trial_id"]


def test_best_checkpoint_loads_and_predicts(sweep) -> None:
    from profner_models.artifacts import load as load_model
    from profner_models.predict import Predictor

    tmp, _ = sweep
    state = json.loads((tmp / "runs" / "sweep" / "profner_sweep.json").read_text())
    checkpoint = Path(state["best_checkpoint"])
    model = load_model(checkpoint)
    # The kept checkpoint is the trial's best epoch, not its last one.
    assert model.metrics["f1_7b"] == pytest.approx(state["best_value"])
    exported = tmp / "best_model"
    meta = json.loads((exported / "meta.json").read_text())
    assert meta["source_run"]["trial_id"] == state["best_trial_id"]
    estimate = meta["unseen"]["estimate"]  # the trial's dev split was held out: honest scores
    assert estimate["metrics"]["f1_7b"] == pytest.approx(state["best_value"])
    assert 0 < estimate["metrics"]["dev_unknown_rate"] < 1 and estimate["dev_docs"] > 0
    predictions = Predictor(exported).predict(["Trabajo de enfermera en el hospital.", "Hola"])
    assert len(predictions) == 2
    for prediction in predictions:
        out = prediction.to_dict()
        assert out["label"] in (0, 1) and 0.0 <= out["probability"] <= 1.0


def test_report_plots_are_pngs(sweep) -> None:
    tmp, result = sweep
    names = {"hyperparameters.png", "parallel_coordinates.png", "learning_curves.png",
             "frontier.png"}
    assert {p.name for p in result.report_files} == names | {"trials.csv"}
    for name in names:
        path = tmp / "runs" / "sweep" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_narrow_from_a_finished_sweep_writes_a_loadable_space(sweep) -> None:
    from trainables.narrow import narrow_from_run

    tmp, _ = sweep
    parent = [r for r in all_runs(tmp) if r.data.tags.get("profner.kind") == "sweep"][0]
    out = narrow_from_run(parent.info.run_id, out=tmp / "smoke_narrow.yaml",
                          tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}", top_fraction=0.4)
    narrowed = load(out)
    raw = yaml.safe_load(out.read_text())
    assert narrowed.study == "smoke_narrow" and raw["narrowed_from"] == parent.info.run_id
    wide = {d.path: d for d in load("smoke").distributions()}
    lr = raw["space"]["training"]["lr"]
    if isinstance(lr, dict):  # a range inside the wide one
        assert wide["training.lr"].args["low"] <= lr["low"] < lr["high"] <= wide["training.lr"].args["high"]
    for seed in range(5):
        assert narrowed.trial_config(narrowed.sample(seed))["model"]["backbone"]["encoder"]["cell"] in ("gru", "lstm")


def test_refit_seed_sweeps_the_top_configs_keeps_the_best_mean_then_trains_plus_dev(sweep) -> None:
    from trainables.refit import RefitOptions, refit

    tmp, _ = sweep
    result = refit(RefitOptions(run=str(tmp / "runs" / "sweep"), seeds=2, top_k=2,
                                out=str(tmp / "refit_model"), storage=str(tmp / "runs")))
    state = json.loads((tmp / "runs" / "sweep" / "profner_sweep.json").read_text())
    assert [c["rank"] for c in result.candidates] == [1, 2]
    assert result.candidates[0]["config"] == state["best_config"]  # rank 1: the sweep's best
    assert result.candidates[0]["config"] != result.candidates[1]["config"]
    kept = max(result.candidates, key=lambda c: c["mean"])
    assert result.rank == kept["rank"] and result.mean == pytest.approx(kept["mean"])
    assert set(result.per_seed) == {13, 14} and result.seed in (13, 14)
    assert result.per_seed[result.seed] == max(result.per_seed.values())
    assert 1 <= result.epochs <= 3
    meta = json.loads((tmp / "refit_model" / "meta.json").read_text())
    assert meta["source_run"]["trained_on"] == "train+dev"
    unseen = meta["unseen"]
    assert set(unseen["seed_sweep"]["best_per_seed"]) == {"13", "14"}
    assert unseen["seed_sweep"]["rank"] == result.rank
    assert [c["rank"] for c in unseen["seed_sweep"]["candidates"]] == [1, 2]
    assert unseen["estimate"]["epoch"] == result.epochs  # the held-out run of the shipped recipe
    assert unseen["estimate"]["dev_docs"] == meta["history"][0]["dev_docs"] if "history" in meta \
        else unseen["estimate"]["dev_docs"] > 0
    assert result.passed and unseen["check"]["documents"] == 0  # the sample is all trained on
    refits = [r for r in all_runs(tmp) if r.data.tags.get("profner.kind") == "refit"]
    assert len(refits) == 1 and refits[0].info.status == "FINISHED"
    figures = refits[0].data.metrics
    assert figures["f1_7b_mean"] == pytest.approx(sum(result.per_seed.values()) / 2)
    assert figures["refit_rank"] == result.rank
    assert figures["rank2_f1_7b_mean"] == pytest.approx(result.candidates[1]["mean"])
    seeds = [r for r in all_runs(tmp) if r.data.tags.get("mlflow.parentRunId") == refits[0].info.run_id]
    assert sorted((r.data.tags["candidate"], r.data.tags["seed"]) for r in seeds) == [
        ("1", "13"), ("1", "14"), ("2", "13"), ("2", "14")]


def test_serve_resolves_the_best_trial_of_a_sweep(sweep) -> None:
    from serve.resolve import ModelRefError, resolve

    tmp, _ = sweep
    sweep_dir = tmp / "runs" / "sweep"
    state = json.loads((sweep_dir / "profner_sweep.json").read_text())
    resolved = resolve(f"sweep:{sweep_dir}")
    assert resolved.model_dir == Path(state["best_checkpoint"]).resolve()
    assert resolved.source["trial_id"] == state["best_trial_id"]
    with pytest.raises(ModelRefError, match="no sweep found"):
        resolve(f"sweep:{tmp / 'no-such-sweep'}")


def test_the_experiment_opens_in_the_model_training_view(sweep) -> None:
    tmp, result = sweep
    experiment = client(tmp).get_experiment(result.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    from trainables.tracking import ui_links

    links = ui_links(result.tracking_uri, result.experiment_id, result.parent_run_id)
    assert links["run"].endswith(f"/#/experiments/{result.experiment_id}/runs/"
                                 f"{result.parent_run_id}?workflowType=machine_learning")
    assert links["experiment"].endswith(f"/#/experiments/{result.experiment_id}/runs?workflowType="
                                        f"machine_learning&viewStateShareKey={result.parent_run_id}")


def test_the_experiment_link_opens_on_the_sweeps_trials(sweep) -> None:
    """The saved view the link names: its filter finds this sweep's trials and nothing else,
    and every column and the sort key are values those trials logged."""
    tmp, result = sweep
    experiment = client(tmp).get_experiment(result.experiment_id)
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{result.parent_run_id}"])
    found = client(tmp).search_runs([result.experiment_id], filter_string=view["searchFilter"])
    assert {r.data.tags["trial_id"] for r in found} == set(result.trial_states)
    assert {r.data.tags["profner.kind"] for r in found} == {"trial"}
    logged = {f"{kind}.`{key}`" for r in found for kind, values in
              (("metrics", r.data.metrics), ("params", r.data.params), ("tags", r.data.tags))
              for key in values}
    assert view["orderByKey"] == f"metrics.`best_{result.metric}`" in logged
    missing = [c for c in view["selectedColumns"] if c not in logged]
    assert not missing and any(c.startswith("params.") for c in view["selectedColumns"]), missing


def test_the_parent_run_is_the_sweep_at_a_glance(sweep) -> None:
    import csv

    tmp, result = sweep
    runs = all_runs(tmp)
    parent = [r for r in runs if r.data.tags.get("profner.kind") == "sweep"][0]
    children = {r.data.tags["trial_id"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    best = children[parent.data.tags["best_trial_id"]]
    history = client(tmp).get_metric_history(best.info.run_id, curve("f1_7b"))
    best_epoch = max(history, key=lambda m: (m.value, -m.step)).step
    for name in ("f1_7b", "f1_7a", "precision_7b", "loss"):
        at_best = [m.value for m in client(tmp).get_metric_history(best.info.run_id, curve(name))
                   if m.step == best_epoch]
        assert parent.data.metrics[f"best_{name}"] == pytest.approx(at_best[0])
    assert parent.data.params["best.training.lr"] == best.data.params["training.lr"]
    stopped = [r for r in children.values() if r.data.tags["profner.stopped_by"] == "scheduler"]
    assert parent.data.metrics["num_stopped_early"] == len(stopped) > 0
    assert parent.data.metrics["num_completed"] + len(stopped) == NUM_SAMPLES
    rows = list(csv.DictReader((tmp / "runs" / "sweep" / "trials.csv").open()))
    assert sorted(r["trial_id"] for r in rows) == sorted(children)
    for row in rows:
        run = children[row["trial_id"]]
        assert float(row["best_f1_7b"]) == pytest.approx(run.data.metrics["best_f1_7b"])
        assert int(row["epochs_run"]) == int(run.data.tags["profner.epochs_run"])


def test_every_trial_records_its_data_as_dataset_inputs(sweep) -> None:
    tmp, _ = sweep
    for run in [r for r in all_runs(tmp) if r.data.tags.get("profner.kind") == "trial"]:
        inputs = run.inputs.dataset_inputs
        contexts = {i.tags[0].value: i.dataset for i in inputs}
        assert set(contexts) == {"training", "validation"}
        train, dev = contexts["training"], contexts["validation"]
        assert train.name == "profner-train" and dev.name == "profner-dev"
        assert train.digest == dev.digest and len(train.digest) == 10
        assert json.loads(train.profile)["documents"] == int(run.data.metrics[curve("train_docs")])
        assert json.loads(dev.profile)["documents"] == int(run.data.metrics[curve("dev_docs")])


def test_the_registered_model_is_an_mlflow_model_that_predicts_as_profner_does(sweep) -> None:
    import mlflow
    import pandas as pd

    from profner_models.predict import Predictor
    from serve.resolve import resolve

    tmp, result = sweep
    texts = ["Trabajo de enfermera en el hospital.", "Los camioneros no paran 🚛", "Hola"]
    mlflow.set_tracking_uri(result.tracking_uri)
    uri = f"models:/profner-smoke/{result.model_version}"
    frame = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": texts}))
    expected = [p.to_dict() for p in Predictor(tmp / "best_model").predict(texts)]
    assert [json.loads(e) for e in frame["entities"]] == [p["entities"] for p in expected]
    assert list(frame["label"]) == [p["label"] for p in expected]
    served = resolve(uri, result.tracking_uri).model_dir  # profner serve reads the same artifact
    assert [p.to_dict() for p in Predictor(served).predict(texts)] == expected


def test_the_frontier_is_the_set_of_non_dominated_trials(sweep) -> None:
    tmp, result = sweep
    runs = [r for r in all_runs(tmp) if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    points = {r.data.tags["trial_id"]: (r.data.metrics["best_f1_7b"],
                                        r.data.metrics["best_latency_ms_p50"]) for r in runs}
    assert all(latency > 0 for _, latency in points.values())

    def dominated(trial: str) -> bool:
        f1, latency = points[trial]
        return any(o != trial and of1 >= f1 and olat <= latency and (of1 > f1 or olat < latency)
                   for o, (of1, olat) in points.items())

    listed = json.loads((tmp / "frontier" / "frontier.json").read_text())
    assert {t["trial_id"] for t in listed} == {t for t in points if not dominated(t)}
    for entry in listed:
        assert (Path(entry["model_dir"]) / "meta.json").is_file()
        assert not (Path(entry["model_dir"]) / "resume").exists()


def test_pareto_marks_exactly_the_non_dominated_points() -> None:
    import math

    from trainables.report import TrialSummary, pareto

    def trial(name: str, f1: float, latency: float) -> TrialSummary:
        return TrialSummary(name, {}, f1, [1], [f1], "completed", latency)

    trials = [trial("fast", 0.6, 2.0), trial("best", 0.8, 5.0), trial("both-worse", 0.55, 3.0),
              trial("tie-slower", 0.8, 6.0), trial("middle", 0.7, 3.5), trial("nan", 0.9, math.nan)]
    assert {t.trial_id for t in pareto(trials)} == {"fast", "best", "middle"}
