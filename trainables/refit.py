"""``profner refit``: seed sweep of a sweep's best config, then the refit on train+dev.

1. The best trial's sampled config (from the sweep's info or its MLflow child runs) is run with
   ``seeds`` seeds as a Tune grid (same trainable, same MLflow wiring: a ``refit`` parent run
   with one child per seed), dev held out: how much of the sweep's best score was luck, on text
   none of the seeds learned from.
2. The recipe to ship: the best seed, the median of the seeds' best epochs, last epoch kept.
   ``profner_models.unseen.train`` runs it as ``profner train`` does: a held-out run of that
   recipe (its dev scores are the unseen-text estimate), the refit on train + dev, and the check
   of both on text neither saw. The model dir carries the estimate, the check and the seed
   spread at that epoch (``meta.json``: ``unseen``); it is logged to the refit parent run and
   registered as a version, unless the check failed.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

import profner_ray
from profner_models import artifacts
from profner_models.config import deep_merge
from profner_models.unseen import train
from search_spaces import loader
from trainables import runner, tracking


@dataclass
class RefitOptions:
    run: str
    out: str
    seeds: int = 5
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


def best_config(info: dict[str, Any]) -> dict[str, Any]:
    """The sampled config of the sweep's best trial (sweep info, else its MLflow child runs)."""
    if info.get("best_config"):
        return info["best_config"]
    metric, mode = info["metric"], info.get("mode", "max")
    runs = [r for r in tracking.child_runs(info["tracking_uri"], info["experiment_id"],
                                           info["parent_run_id"])
            if r.info.status == "FINISHED" and f"best_{metric}" in r.data.metrics]
    if not runs:
        raise LookupError(f"sweep {info['parent_run_id']}: no finished trial with best_{metric}")
    pick = max if mode == "max" else min
    best = pick(runs, key=lambda r: r.data.metrics[f"best_{metric}"])
    return json.loads(best.data.tags[tracking.CONFIG_TAG])


def refit(options: RefitOptions) -> RefitResult:
    info = runner.find_sweep(options.run, options.tracking_uri, options.storage)
    space = loader.load(info["space_path"])
    metric, mode = info["metric"], info.get("mode", "max")
    sampled = best_config(info)
    base = space.base_config()
    data_dir = options.data_dir or info.get("data_dir")
    first_seed = int(deep_merge(base, sampled).get("training", {}).get("seed", 13))
    seeds = [first_seed + i for i in range(options.seeds)]

    tracking_uri = info["tracking_uri"]
    experiment_id = info["experiment_id"]
    tags = {"study": space.study, "search_space": str(space.path), "base_config": space.base,
            "git_commit": tracking.git_commit(), "refit_of": info["parent_run_id"]}
    parent = tracking.start_parent_run(tracking_uri, experiment_id, f"refit-{space.study}",
                                       tags, {"seeds": seeds, "metric": metric, "config": sampled},
                                       kind="refit")
    tracker = tracking.TrialTracker(tracking_uri, experiment_id, parent, tags, metric, mode,
                                    first_seed, data=tracking.dataset_info(
                                        data_dir, base.get("task", "profner")))
    profner_ray.start(options.address, options.num_cpus, options.ray_temp_dir, log_to_driver=True)
    param_space = deep_merge(sampled, {"training": {"seed": tune.grid_search(seeds)}})
    storage = Path(options.storage).expanduser().resolve()
    tuner = tune.Tuner(
        runner.make_trainable(base, data_dir, metric, options.cpus_per_trial,
                              options.gpus_per_trial),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode,
                                    max_concurrent_trials=options.max_concurrent),
        run_config=tune.RunConfig(name=f"refit-{parent[:8]}", storage_path=str(storage),
                                  callbacks=[tracker],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  verbose=1))
    results = tuner.fit()
    per_seed, best_epochs, at_epoch = {}, {}, {}
    for result in results:
        if result.error or result.metrics_dataframe is None:
            continue
        history = result.metrics_dataframe
        row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
        seed = int(result.config["training"]["seed"])
        per_seed[seed] = float(row[metric])
        best_epochs[seed] = int(row["epoch"])
        at_epoch[seed] = dict(zip(history["epoch"].astype(int), history[metric].astype(float)))
    if not per_seed:
        raise LookupError("refit: every seed run failed")
    values = list(per_seed.values())
    best_seed = (max if mode == "max" else min)(per_seed, key=per_seed.get)
    epochs = int(round(statistics.median(best_epochs.values())))

    config = deep_merge(base, sampled)
    config["data"]["train_on_dev"] = True
    config["training"].update(seed=best_seed, epochs=epochs, early_stopping_patience=None,
                              select="last")
    config["training"].pop("fail_at_epoch", None)
    shipped = train(config, data_dir, progress=True, jobs=2 if options.max_concurrent > 1 else 1)
    spread = [scores[epochs] for scores in at_epoch.values() if epochs in scores]
    unseen = {**shipped.unseen, "seed_sweep": {
        "metric": metric, "epoch": epochs, "seeds": len(spread),
        "mean": statistics.mean(spread) if spread else None,
        "std": statistics.stdev(spread) if len(spread) > 1 else 0.0,
        "best_per_seed": {str(k): v for k, v in per_seed.items()}}}
    model_dir = Path(options.out)
    artifacts.save(shipped.result.model, model_dir, extra_meta={"unseen": unseen, "source_run": {
        "sweep_run_id": info["parent_run_id"], "refit_run_id": parent, "study": space.study,
        "tracking_uri": tracking_uri, "trained_on": "train+dev", "seed": best_seed,
        "epochs": epochs}})

    client = tracking.client(tracking_uri)
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    client.log_metric(parent, f"{metric}_mean", mean)
    client.log_metric(parent, f"{metric}_std", std)
    client.log_metric(parent, "refit_epochs", epochs)
    for key, value in shipped.unseen["estimate"]["metrics"].items():
        client.log_metric(parent, f"unseen_{key}", value)
    client.set_tag(parent, "refit_check", "passed" if shipped.passed else "failed")
    version = None
    if shipped.passed:
        version = runner.register_model_dir(client, parent, model_dir, f"profner-{space.study}",
                                            {"study": space.study,
                                             "refit_of": info["parent_run_id"],
                                             "trained_on": "train+dev"})
    client.set_terminated(parent, "FINISHED")
    return RefitResult(metric, per_seed, best_epochs, mean, std, best_seed, epochs, model_dir,
                       parent, version, unseen, shipped.passed,
                       tracking.ui_links(tracking_uri, experiment_id, parent))
