"""Run a sweep: Ray Tune ``Tuner`` + HyperOptSearch (TPE) + ASHA, every trial in MLflow.

``run_sweep(SweepOptions(...))`` is what ``profner tune`` calls. A sweep lives in
``<storage>/<name>/`` (Tune's experiment dir) with ``profner_sweep.json`` beside Tune's state:
the study, the search-space file, the MLflow parent run, and after the sweep the best trial.
``--resume`` restores the Tuner from that dir (finished trials kept, the searcher's TPE history
restored, unfinished trials restarted from their latest checkpoint) and reuses the parent run.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune import Tuner
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.utils import flatten_dict

import profner_ray
from search_spaces import loader
from trainables import report, tracking
from trainables.console import TrialLines
from trainables.models import export_frontier, export_model, log_best_model
from trainables.sweeps import read_sweep_file, snapshot_statuses, sweep_dir_for, write_sweep_file
from trainables.tracking import TrialTracker
from trainables.trainable import train_trial

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from ray.tune import Result, ResultGrid

log = logging.getLogger(__name__)


@dataclass
class SweepOptions:
    """The knobs of ``profner tune`` (see trainables/cli.py for their help)."""

    space: str
    data_dir: str | None = None
    num_samples: int = 8
    max_concurrent: int = 2
    address: str | None = None
    num_cpus: int | None = None          # local Ray only; None: all cores
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    metric: str | None = None            # default: the space's metric
    mode: str | None = None
    grace_period: int = 1
    reduction_factor: int = 2
    n_initial_points: int | None = None  # default: scaled to num_samples (initial_points())
    seed: int = 13
    resume: bool = False
    name: str | None = None
    storage: str = "ray_results"
    tracking_uri: str | None = None
    experiment: str | None = None        # MLflow experiment; default profner-<study>
    export: str | None = None
    export_frontier: str | None = None   # the Pareto-optimal trials (metric vs latency) here
    register_as: str | None = None       # registered model name; default profner-<study>
    report: bool = True
    ray_temp_dir: str | None = None
    scheduler: str = "asha"              # asha | fifo (every trial runs all its epochs)
    max_failures: int = 0                # retries of a failed trial, from its last checkpoint
    # Replay these sampled configs instead of searching (benchmarks, reruns); num_samples is
    # then their count.
    fixed_configs: list[dict[str, Any]] | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SweepResult:
    sweep_dir: Path
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    metric: str
    mode: str
    best_trial_id: str | None
    best_value: float | None
    best_config: dict[str, Any] | None
    best_checkpoint: Path | None
    trial_states: dict[str, str]
    exported: Path | None = None
    frontier: Path | None = None
    model_version: str | None = None
    report_files: list[Path] = field(default_factory=list)
    num_errors: int = 0
    trial_epochs: dict[str, int] = field(default_factory=dict)  # epochs each trial ran


def initial_points(num_samples: int) -> int:
    """Random trials before TPE takes over: a quarter of the budget, between 3 and 20.

    HyperOptSearch's default of 20 would keep any sweep of 20 trials or fewer purely random.
    """
    return max(3, min(20, num_samples // 4))


def max_epochs(space: loader.SearchSpace) -> int:
    """The largest ``training.epochs`` a trial can have (ASHA's ``max_t``)."""
    base_epochs = int(space.base_config().get("training", {}).get("epochs", 10))
    epochs = [d for d in space.distributions() if d.path.endswith("training.epochs")]
    node = space.spec.get("training", {}).get("epochs")
    if not epochs:
        return int(node) if isinstance(node, (int, float)) else base_epochs
    dist = epochs[0]
    if dist.kind in ("choice",):
        return int(max(dist.args["options"]))
    if dist.kind == "randint":
        return int(dist.args["high"]) - 1
    return int(dist.args["high"])










def make_trainable(base_config: dict[str, Any], data_dir: str | None, metric: str,
                   cpus: float, gpus: float) -> type[tune.Trainable]:
    """``train_trial`` with its data path and base config bound, and its resources."""

    return tune.with_resources(
        tune.with_parameters(train_trial, base_config=base_config, data_dir=data_dir,
                             metric=metric),
        {"cpu": cpus, "gpu": gpus})


def build_tuner(options: SweepOptions, space: loader.SearchSpace, sweep_dir: Path, metric: str,
                mode: str, tracker: TrialTracker, resume: bool) -> Tuner:
    trainable = make_trainable(space.base_config(), options.data_dir, metric,
                               options.cpus_per_trial, options.gpus_per_trial)
    if resume:
        return Tuner.restore(str(sweep_dir), trainable=trainable, resume_unfinished=True,
                             resume_errored=False, restart_errored=False)
    if options.fixed_configs:  # replays: Tune's own generator hands them out in order
        num_samples = len(options.fixed_configs)
        search_alg = BasicVariantGenerator(points_to_evaluate=options.fixed_configs,
                                           max_concurrent=options.max_concurrent)
    else:
        num_samples = options.num_samples
        search_alg = ConcurrencyLimiter(HyperOptSearch(
            space=space.to_hyperopt(), metric=metric, mode=mode,
            n_initial_points=options.n_initial_points or initial_points(options.num_samples),
            random_state_seed=options.seed), max_concurrent=options.max_concurrent)
    if options.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_epochs(space),
                                  grace_period=options.grace_period,
                                  reduction_factor=options.reduction_factor)
    elif options.scheduler == "fifo":
        scheduler = None
    else:
        raise ValueError(f"unknown scheduler {options.scheduler!r} (asha | fifo)")
    return Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=metric, mode=mode, num_samples=num_samples, search_alg=search_alg,
            scheduler=scheduler, reuse_actors=True),  # the search_alg limits concurrency
        run_config=tune.RunConfig(
            name=sweep_dir.name, storage_path=str(sweep_dir.parent),
            callbacks=[tracker, TrialLines(metric, mode, num_samples)],
            # One checkpoint per trial, the latest: it holds the trial's best model dir and what
            # resumes it (so a 50-trial sweep keeps 50 checkpoints, not one per epoch).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=options.max_failures, fail_fast=False),
            verbose=0),  # TrialLines prints a line per trial instead of Tune's tables
    )


def quiet_console() -> None:
    """A console that reads like a log, for ``profner tune`` and ``profner refit``: Tune's
    legacy reporter (silent at verbose=0, where the new one still prints a configuration box
    and a TensorBoard hint), MLflow's INFO lines (its logger is set up when it is imported) and
    its download bars off."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    importlib.import_module("mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def run_sweep(options: SweepOptions) -> SweepResult:
    """Run (or resume) one sweep; returns where everything went."""
    quiet_console()
    # Snapshot Tune's experiment state every second (default: >= 10 s), so a killed driver
    # loses at most the last second of trial bookkeeping.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    space_path = loader.resolve_space_path(options.space)
    space = loader.load(space_path)
    sweep_dir = sweep_dir_for(options, space.study)
    if options.resume:
        info = read_sweep_file(sweep_dir)
        info["tracking_uri"] = options.tracking_uri or info["tracking_uri"]
        space = loader.load(info["space_path"])
    elif sweep_dir.exists():
        raise FileExistsError(f"{sweep_dir} exists: pass --resume to continue it, or another --name")
    metric = options.metric or (info["metric"] if options.resume else space.metric) or "f1_7b"
    mode = options.mode or (info["mode"] if options.resume else space.mode) or "max"

    tags = {"study": space.study, "search_space": str(space.path), "git_commit": tracking.git_commit(),
            "base_config": space.base, **options.extra_tags}
    if not options.resume:
        info = open_sweep(options, space, sweep_dir, metric, mode, tags)
    tracking_uri, experiment_id = info["tracking_uri"], info["experiment_id"]
    parent_run_id = info["parent_run_id"]
    base_seed = space.base_config().get("training", {}).get("seed")
    tracker = TrialTracker(tracking_uri, experiment_id, parent_run_id, tags, metric, mode, base_seed,
                           data=tracking.dataset_info(options.data_dir,
                                                      space.base_config().get("task", "profner")))
    profner_ray.start(options.address, options.num_cpus, options.ray_temp_dir, log_to_driver=True)
    tuner = build_tuner(options, space, sweep_dir, metric, mode, tracker, options.resume)
    if options.resume:
        known = set(snapshot_statuses(sweep_dir))
        counts = tracking.reconcile_after_crash(tracking_uri, experiment_id, parent_run_id, known)
        log.info("resume: MLflow runs marked KILLED: %d, orphans deleted: %d",
                 counts["killed"], counts["deleted"])
        tracking.client(tracking_uri).update_run(parent_run_id, status="RUNNING")
    results = tuner.fit()
    statuses = snapshot_statuses(sweep_dir)
    unfinished = [t for t, status in statuses.items() if status not in ("TERMINATED", "ERROR")]
    expected = (len(info["options"]["fixed_configs"]) if info["options"].get("fixed_configs")
                else int(info["options"]["num_samples"]))
    if unfinished or len(statuses) < expected:  # Ctrl-C: Tune saved its state, returned early
        interrupted(info, sweep_dir, set(statuses))
        raise SweepInterrupted(
            f"sweep interrupted ({len(statuses) - len(unfinished)} of {expected} trials "
            f"finished); continue it with: profner tune {space.path} --resume "
            f"--name {sweep_dir.name} --storage {sweep_dir.parent}")
    return finish_sweep(results, options, space, sweep_dir, info, metric, mode)


def open_sweep(options: SweepOptions, space: loader.SearchSpace, sweep_dir: Path, metric: str,
               mode: str, tags: dict[str, str]) -> dict[str, Any]:
    """A new sweep: its MLflow experiment and parent run, and its sweep file; the sweep info."""
    tracking_uri = options.tracking_uri or tracking.default_tracking_uri()
    experiment_name = options.experiment or f"profner-{space.study}"
    experiment_id = tracking.ensure_experiment(tracking_uri, experiment_name)
    parent_run_id = tracking.start_parent_run(
        tracking_uri, experiment_id, sweep_dir.name, {**tags, "sweep_dir": str(sweep_dir)},
        {"num_samples": options.num_samples, "max_concurrent": options.max_concurrent,
         "metric": metric, "mode": mode, "grace_period": options.grace_period,
         "reduction_factor": options.reduction_factor, "searcher_seed": options.seed,
         "n_initial_points": options.n_initial_points or initial_points(options.num_samples),
         "cpus_per_trial": options.cpus_per_trial, "gpus_per_trial": options.gpus_per_trial,
         "data_dir": options.data_dir or "bundled sample"})
    info = {"study": space.study, "space_path": str(space.path), "metric": metric,
            "mode": mode, "tracking_uri": tracking_uri, "experiment_id": experiment_id,
            "experiment": experiment_name, "parent_run_id": parent_run_id,
            "data_dir": options.data_dir, "base": space.base,
            "options": asdict(options), "status": "running"}
    write_sweep_file(sweep_dir, info)
    tracking.save_trials_view(tracking_uri, experiment_id, parent_run_id, metric, mode,
                              sampled_keys(space))
    tracking.client(tracking_uri).log_artifact(parent_run_id, str(space.path), "search_space")
    return info


def sampled_keys(space: loader.SearchSpace, draws: int = 20) -> list[str]:
    """The params a trial of ``space`` logs (its sampled values, flattened), over ``draws``
    samples so every branch of a choice is met."""
    keys: dict[str, None] = {}
    for seed in range(draws):
        keys.update(dict.fromkeys(flatten_dict(space.sample(seed), delimiter=".")))
    return list(keys)


class SweepInterrupted(RuntimeError):
    """The sweep stopped before its trials finished (Ctrl-C); ``--resume`` continues it."""


def interrupted(info: dict[str, Any], sweep_dir: Path, trial_ids: set[str]) -> None:
    """Mark the trial runs Tune left unfinished and the parent run KILLED until a resume."""

    tracking.reconcile_after_crash(info["tracking_uri"], info["experiment_id"],
                                   info["parent_run_id"], trial_ids)
    tracking.client(info["tracking_uri"]).set_terminated(info["parent_run_id"], status="KILLED")
    info["status"] = "interrupted"
    write_sweep_file(sweep_dir, info)




def _best_value(result, metric: str, mode: str) -> float | None:
    history = result.metrics_dataframe
    if history is None or metric not in history.columns or history[metric].dropna().empty:
        return None
    values = history[metric].dropna()
    return float(values.max() if mode == "max" else values.min())


def best_result(results: ResultGrid, metric: str, mode: str) -> Result | None:
    """The trial with the best epoch among trials that did not error (None: no such trial).

    An errored trial's early epochs may score well, but a crashing config is no winner.
    """
    scored = [(value, result) for result in results if not result.error
              for value in [_best_value(result, metric, mode)] if value is not None]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda vr: vr[0])[1]


def finish_sweep(results: ResultGrid, options: SweepOptions, space: loader.SearchSpace, sweep_dir: Path,
                 info: dict[str, Any], metric: str, mode: str) -> SweepResult:
    """Best trial -> export + MLflow artifact + model version; report plots; parent run done."""

    tracking_uri, parent_run_id = info["tracking_uri"], info["parent_run_id"]
    mlflow_client = tracking.client(tracking_uri)
    states, epochs = {}, {}
    for result in results:
        trial_id = result.metrics.get("trial_id") or Path(result.path).name
        states[trial_id] = "ERROR" if result.error else "TERMINATED"
        epochs[trial_id] = int(result.metrics.get("epoch", 0))
    best_id = best_value = best_config = best_ckpt = None
    best = best_result(results, metric, mode)
    if best is not None:
        checkpoint = best.get_best_checkpoint(metric, mode) or best.checkpoint
        best_id = best.metrics.get("trial_id")
        best_value = _best_value(best, metric, mode)
        best_config = best.config
        best_ckpt = Path(checkpoint.path) if checkpoint is not None else None
    out = SweepResult(sweep_dir=sweep_dir, parent_run_id=parent_run_id, tracking_uri=tracking_uri,
                      experiment_id=info["experiment_id"], metric=metric, mode=mode,
                      best_trial_id=best_id, best_value=best_value, best_config=best_config,
                      best_checkpoint=best_ckpt, trial_states=states,
                      num_errors=sum(1 for s in states.values() if s == "ERROR"),
                      trial_epochs=epochs)
    trials = report.summarise(results, metric, mode)
    if options.report:
        out.report_files = report.write_report(results, space, metric, mode, sweep_dir)
        out.report_files.append(report.write_trials_csv(trials, metric, sweep_dir / "trials.csv"))
        for path in out.report_files:
            mlflow_client.log_artifact(parent_run_id, str(path), "report")
    if best_ckpt is not None:
        out.model_version = log_best_model(mlflow_client, info, best_ckpt, best_id,
                                           options.register_as or f"profner-{space.study}")
        if options.export:
            out.exported = export_model(best_ckpt, Path(options.export), info, best_id)
        summarise_best(mlflow_client, parent_run_id, best, metric, mode)
        mlflow_client.set_tag(parent_run_id, "best_trial_id", best_id)
    if options.export_frontier:
        out.frontier = export_frontier(results, trials, mode, Path(options.export_frontier), info)
    stopped = {"completed": 0, "stopped": 0, "error": 0}
    for trial in trials:
        stopped[trial.status] += 1
    mlflow_client.log_metric(parent_run_id, "num_trials", len(states))
    mlflow_client.log_metric(parent_run_id, "num_errors", out.num_errors)
    for status, name in (("completed", "num_completed"), ("stopped", "num_stopped_early"),
                         ("error", "num_failed")):
        mlflow_client.log_metric(parent_run_id, name, stopped[status])
    mlflow_client.set_terminated(parent_run_id, status="FINISHED")
    info.update(status="finished", best_trial_id=best_id, best_value=best_value,
                best_checkpoint=str(best_ckpt) if best_ckpt else None, best_config=best_config,
                model_version=out.model_version, exported=str(out.exported) if out.exported else None)
    write_sweep_file(sweep_dir, info)
    return out


def summarise_best(mlflow_client: MlflowClient, parent_run_id: str, best: Result, metric: str,
                   mode: str) -> None:
    """The best trial at a glance on the parent run: every metric of its best epoch as
    ``best_<name>``, and its sampled hyperparameters as ``best.<key>`` params."""
    history = best.metrics_dataframe.dropna(subset=[metric])
    row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
    keys = tracking.metric_keys(best.metrics)
    metrics = {f"best_{key}": float(value) for key, value in row.items()
               if key in keys and isinstance(value, (int, float)) and not isinstance(value, bool)
               and math.isfinite(float(value))}
    for key, value in metrics.items():
        mlflow_client.log_metric(parent_run_id, key, value)
    tracking.log_params(mlflow_client, parent_run_id, {"best": best.config or {}})










