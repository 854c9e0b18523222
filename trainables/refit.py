"""``profner refit``: seed sweep of a sweep's best configs, then the refit on train+dev.

1. The ``top_k`` best trials' sampled configs (the best one from the sweep's info, more from its
   MLflow child runs) are each run with ``seeds`` seeds as a Tune grid (same trainable, same
   MLflow wiring: a ``refit`` parent run with one child per config and seed, tagged with the
   config's rank), dev held out: how much of the sweep's best score was luck, on text none of
   the seeds learned from. The config kept is the one with the best mean over its seeds: a
   single dev figure of a noisy system (one lucky seed) does not pick it.
2. The recipe to ship: that config, its best seed, the median of its seeds' best epochs, last
   epoch kept.
   ``profner_models.unseen.train`` runs it as ``profner train`` does: a held-out run of that
   recipe (its dev scores are the unseen-text estimate), the refit on train + dev, and the check
   of both on text neither saw. The model dir carries the estimate, the check and the seed
   spread at that epoch (``meta.json``: ``unseen``); it is logged to the refit parent run and
   registered as a version, unless the check failed.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

import profner_ray
from profner_models import artifacts
from profner_models.config import deep_merge
from profner_models.unseen import train
from search_spaces import FAULTS_KEY, loader
from trainables import models, runner, sweeps, tracking
from trainables.console import TrialLines


@dataclass
class RefitOptions:
    run: str
    out: str
    seeds: int = 5
    top_k: int = 1  # the sweep's best configs run over the seeds; the best mean is kept
    data_dir: str | None = None
    tracking_uri: str | None = None
    storage: str = "ray_results"
    address: str | None = None
    num_cpus: int | None = None
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    ray_temp_dir: str | None = None


@dataclass
class RefitResult:
    metric: str
    per_seed: dict[int, float]
    best_epochs: dict[int, int]
    mean: float
    std: float
    seed: int
    epochs: int
    model_dir: Path
    parent_run_id: str
    model_version: str | None
    unseen: dict
    passed: bool
    links: dict[str, str]
    rank: int = 1  # the kept config's place in the sweep
    candidates: list[dict[str, Any]] = field(default_factory=list)  # SeedSweep.summary() each


def best_configs(info: dict[str, Any], k: int = 1) -> list[dict[str, Any]]:
    """The sampled configs of the sweep's ``k`` best trials, best first: the sweep's own best
    (its info), then the others from its MLflow child runs (so a tie on the metric never puts
    another trial's config first)."""
    best = info.get("best_config")
    if k == 1 and best:
        return [best]
    metric, mode = info["metric"], info.get("mode", "max")
    runs = [r for r in tracking.child_runs(info["tracking_uri"], info["experiment_id"],
                                           info["parent_run_id"])
            if r.info.status == "FINISHED" and f"best_{metric}" in r.data.metrics
            and tracking.CONFIG_TAG in r.data.tags]
    if not runs:
        raise LookupError(f"sweep {info['parent_run_id']}: no finished trial with best_{metric}")
    runs.sort(key=lambda r: r.data.metrics[f"best_{metric}"], reverse=mode == "max")
    configs: list[dict[str, Any]] = [best] if best else []
    for run in runs:
        config = json.loads(run.data.tags[tracking.CONFIG_TAG])
        if config not in configs:
            configs.append(config)
    return configs[:k]


@dataclass
class SeedSweep:
    """One config's seed sweep: the best score per seed, its epoch, the score at each epoch."""

    rank: int  # the config's place in the sweep (1: its best trial)
    sampled: dict[str, Any]
    per_seed: dict[int, float]
    best_epochs: dict[int, int]
    at_epoch: dict[int, dict[int, float]]

    @property
    def epochs(self) -> int:
        """The recipe's epochs: the median of the seeds' best epochs."""
        return int(round(statistics.median(self.best_epochs.values())))

    @property
    def mean(self) -> float:
        return statistics.mean(self.per_seed.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.per_seed.values()) if len(self.per_seed) > 1 else 0.0

    def best_seed(self, mode: str) -> int:
        return (max if mode == "max" else min)(self.per_seed, key=self.per_seed.get)

    def spread_at(self, epoch: int) -> list[float]:
        return [scores[epoch] for scores in self.at_epoch.values() if epoch in scores]

    def summary(self) -> dict[str, Any]:
        return {"rank": self.rank, "mean": self.mean, "std": self.std,
                "best_per_seed": {str(k): v for k, v in self.per_seed.items()},
                "config": self.sampled}


def refit(options: RefitOptions) -> RefitResult:
    """Seed sweeps -> the best mean -> recipe -> ship (the module docstring)."""
    runner.quiet_console()
    info = sweeps.find_sweep(options.run, options.tracking_uri, options.storage)
    space = loader.load(info["space_path"])
    mode = info.get("mode", "max")
    data_dir = options.data_dir or info.get("data_dir")
    candidates = best_configs(info, options.top_k)
    parent = start_refit_run(options, info, space, candidates)
    profner_ray.start(options.address, options.num_cpus, options.ray_temp_dir, log_to_driver=True)
    done = [sweep for rank, sampled in enumerate(candidates, 1)
            if (sweep := seed_sweep(options, info, space, rank, sampled, parent, data_dir)).per_seed]
    if not done:
        raise LookupError("refit: every seed run failed")
    chosen = (max if mode == "max" else min)(done, key=lambda sweep: sweep.mean)
    config = recipe(space.base_config(), chosen.sampled, chosen.best_seed(mode), chosen.epochs)
    return ship(options, info, space, parent, done, chosen, config, data_dir)


def start_refit_run(options: RefitOptions, info: dict[str, Any], space: loader.SearchSpace,
                    candidates: list[dict[str, Any]]) -> str:
    """The ``refit`` MLflow parent run (and its saved view of the seed runs): its id."""
    metric, mode = info["metric"], info.get("mode", "max")
    parent = tracking.start_parent_run(
        info["tracking_uri"], info["experiment_id"], f"refit-{space.study}", _refit_tags(info, space),
        {"seeds": options.seeds, "top_k": options.top_k, "metric": metric,
         "config": candidates[0]}, kind="refit")
    tracking.save_trials_view(info["tracking_uri"], info["experiment_id"], parent, metric, mode,
                              ["training.seed"])
    return parent


def _refit_tags(info: dict[str, Any], space: loader.SearchSpace) -> dict[str, str]:
    return {"study": space.study, "search_space": str(space.path), "base_config": space.base,
            "git_commit": tracking.git_commit(), "refit_of": info["parent_run_id"]}


def seed_sweep(options: RefitOptions, info: dict[str, Any], space: loader.SearchSpace, rank: int,
               sampled: dict[str, Any], parent: str, data_dir: str | None) -> SeedSweep:
    """The sampled config with ``options.seeds`` seeds as a Tune grid, dev held out, each seed a
    child run of the ``refit`` parent run tagged with the config's ``rank``."""
    metric, mode = info["metric"], info.get("mode", "max")
    base = space.base_config()
    first_seed = int(deep_merge(base, sampled).get("training", {}).get("seed", 13))
    seeds = [first_seed + i for i in range(options.seeds)]
    tracker = tracking.TrialTracker(info["tracking_uri"], info["experiment_id"], parent,
                                    {**_refit_tags(info, space), "candidate": str(rank)}, metric,
                                    mode, first_seed, data=tracking.dataset_info(
                                        data_dir, base.get("task", "profner")))
    tuner = tune.Tuner(
        runner.make_trainable(base, data_dir, metric, options.cpus_per_trial,
                              options.gpus_per_trial),
        param_space=deep_merge(sampled, {"training": {"seed": tune.grid_search(seeds)}}),
        tune_config=tune.TuneConfig(metric=metric, mode=mode,
                                    max_concurrent_trials=options.max_concurrent),
        run_config=tune.RunConfig(name=f"refit-{parent[:8]}-{rank}",
                                  storage_path=str(Path(options.storage).expanduser().resolve()),
                                  callbacks=[tracker, TrialLines(metric, mode, len(seeds))],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  verbose=0))
    sweep = SeedSweep(rank, sampled, {}, {}, {})
    for result in tuner.fit():
        if result.error or result.metrics_dataframe is None:
            continue
        history = result.metrics_dataframe
        row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
        seed = int(result.config["training"]["seed"])
        sweep.per_seed[seed], sweep.best_epochs[seed] = float(row[metric]), int(row["epoch"])
        sweep.at_epoch[seed] = dict(zip(history["epoch"].astype(int), history[metric].astype(float)))
    return sweep


def recipe(base: dict[str, Any], sampled: dict[str, Any], seed: int, epochs: int) -> dict[str, Any]:
    """The config to ship: the best seed, a fixed number of epochs, the last one kept, trained
    on train + dev."""
    config = deep_merge(base, sampled)
    config["data"]["train_on_dev"] = True
    config["training"].update(seed=seed, epochs=epochs, early_stopping_patience=None,
                              select="last")
    config.pop(FAULTS_KEY, None)
    return config


def ship(options: RefitOptions, info: dict[str, Any], space: loader.SearchSpace, parent: str,
         done: list[SeedSweep], chosen: SeedSweep, config: dict[str, Any],
         data_dir: str | None) -> RefitResult:
    """``unseen.train`` of the recipe (held-out run, refit, check), the model dir with its
    evidence, the refit parent run's figures, and a registered version when the check passed."""
    metric, tracking_uri = info["metric"], info["tracking_uri"]
    epochs, seed = chosen.epochs, int(config["training"]["seed"])
    shipped = train(config, data_dir, progress=True, jobs=2 if options.max_concurrent > 1 else 1)
    spread = chosen.spread_at(epochs)
    unseen = {**shipped.unseen, "seed_sweep": {
        "metric": metric, "epoch": epochs, "seeds": len(spread),
        "mean": statistics.mean(spread) if spread else None,
        "std": statistics.stdev(spread) if len(spread) > 1 else 0.0,
        "best_per_seed": {str(k): v for k, v in chosen.per_seed.items()},
        "rank": chosen.rank, "candidates": [sweep.summary() for sweep in done]}}
    model_dir = Path(options.out)
    artifacts.save(shipped.result.model, model_dir, extra_meta={"unseen": unseen, "source_run": {
        "sweep_run_id": info["parent_run_id"], "refit_run_id": parent, "study": space.study,
        "tracking_uri": tracking_uri, "trained_on": "train+dev", "seed": seed, "epochs": epochs}})
    client = tracking.client(tracking_uri)
    figures = {f"{metric}_mean": chosen.mean, f"{metric}_std": chosen.std, "refit_epochs": epochs,
               "refit_rank": chosen.rank,
               **{f"rank{sweep.rank}_{metric}_mean": sweep.mean for sweep in done},
               **{f"unseen_{k}": v for k, v in shipped.unseen["estimate"]["metrics"].items()}}
    for key, value in figures.items():
        client.log_metric(parent, key, value)
    client.set_tag(parent, "refit_check", "passed" if shipped.passed else "failed")
    version = None
    if shipped.passed:
        version = models.register_model_dir(client, parent, model_dir, f"profner-{space.study}",
                                            {"study": space.study,
                                             "refit_of": info["parent_run_id"],
                                             "trained_on": "train+dev"})
    client.set_terminated(parent, "FINISHED")
    return RefitResult(metric, chosen.per_seed, chosen.best_epochs, chosen.mean, chosen.std, seed,
                       epochs, model_dir, parent, version, unseen, shipped.passed,
                       tracking.ui_links(tracking_uri, info["experiment_id"], parent),
                       chosen.rank, [sweep.summary() for sweep in done])
