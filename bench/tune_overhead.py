"""What Tune + MLflow cost, what concurrency gains, what ASHA saves (smoke study, sample data).

The same K configs (sampled from the smoke space with a fixed seed, ``training.epochs`` set to
E) are run

  (a) as plain ``fit`` calls in a loop (one process, data read once);
  (b) through the sweep runner at concurrency 1 (Tune + checkpoints + MLflow child runs),
      every trial to the end (FIFO): overhead ratio (b)/(a);
  (c) the same at concurrency 2: throughput gain (b)/(c);
  (d) the same at concurrency 2 with ASHA: epochs run vs (c)'s full epochs, and the best
      metric found by each.

A private local Ray (``--num-cpus``) is started once; its start time is reported apart.

    .venv/bin/python bench/tune_overhead.py [--quick] [--json] [--trials K] [--epochs E]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sampled_configs(k: int, epochs: int, seed: int) -> list[dict]:
    from search_spaces import load

    space = load("smoke")
    configs = []
    for i in range(k):
        config = space.sample(seed + i)
        config.setdefault("training", {})["epochs"] = epochs
        configs.append(config)
    return configs


def plain_loop(configs: list[dict], metric: str) -> dict:
    import torch

    from profner_models.training import fit, load_task_data
    from search_spaces import load

    torch.set_num_threads(1)
    space = load("smoke")
    started = time.perf_counter()
    train, dev = load_task_data(space.trial_config(configs[0]), None)
    best, epochs = [], 0
    for config in configs:
        result = fit(space.trial_config(config), train, dev, progress=False)
        best.append(result.best_metrics[metric])
        epochs += len(result.history)
    return {"seconds": time.perf_counter() - started, "best": max(best), "epochs": epochs}


def through_tune(configs: list[dict], work: Path, name: str, concurrency: int,
                 scheduler: str) -> dict:
    from trainables.runner import SweepOptions, run_sweep

    started = time.perf_counter()
    result = run_sweep(SweepOptions(
        space="smoke", fixed_configs=configs, max_concurrent=concurrency, scheduler=scheduler,
        name=name, storage=str(work / "runs"), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        report=False, grace_period=1, reduction_factor=2))
    return {"seconds": time.perf_counter() - started, "best": result.best_value,
            "epochs": sum(result.trial_epochs.values()), "trials": len(result.trial_states)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=None, help="K (default 8; quick 4)")
    parser.add_argument("--epochs", type=int, default=None, help="E (default 6; quick 3)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="K=4, E=3")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    k = args.trials or (4 if args.quick else 8)
    epochs = args.epochs or (3 if args.quick else 6)
    metric = "f1_7b"
    configs = sampled_configs(k, epochs, args.seed)

    import ray

    import profner_ray

    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    ray_tmp = tempfile.mkdtemp(prefix="rt-bench-", dir="/tmp")
    try:
        plain = plain_loop(configs, metric)
        started = time.perf_counter()
        profner_ray.start(None, args.num_cpus, ray_tmp)
        ray_init = time.perf_counter() - started
        serial = through_tune(configs, work, "c1", 1, "fifo")
        parallel = through_tune(configs, work, "c2", 2, "fifo")
        asha = through_tune(configs, work, "asha", 2, "asha")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    figures = {
        "trials": k, "epochs_per_trial": epochs, "num_cpus": args.num_cpus,
        "ray_init_s": round(ray_init, 1),
        "plain_fit_loop_s": round(plain["seconds"], 1),
        "tune_mlflow_c1_s": round(serial["seconds"], 1),
        "overhead_ratio_c1_over_plain": round(serial["seconds"] / plain["seconds"], 2),
        "tune_mlflow_c2_s": round(parallel["seconds"], 1),
        "throughput_gain_c2_over_c1": round(serial["seconds"] / parallel["seconds"], 2),
        "asha_c2_s": round(asha["seconds"], 1),
        "epochs_full": parallel["epochs"], "epochs_asha": asha["epochs"],
        "asha_epoch_saving": round(1 - asha["epochs"] / parallel["epochs"], 2),
        f"best_{metric}_plain": round(plain["best"], 4),
        f"best_{metric}_full": round(parallel["best"], 4),
        f"best_{metric}_asha": round(asha["best"], 4),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:32s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
