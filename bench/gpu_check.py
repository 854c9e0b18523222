"""The GPU check: one script to run on a machine with a CUDA GPU (about 5 minutes).

    python bench/gpu_check.py [--data ../shared/data/profner] [--steps 200] [--json]

1. **Alone**: System 1 (``transformer_e5``) and System 2 (``rnn``, vectors off) each train
   ``--steps`` steps on the GPU at the GPU recipe (``training.recipe_for``: 4x the batch, bf16
   where the GPU has it): tweets/s, aten ops per step (``profner_models.opcount``), host ms per
   step, peak memory, the share of the step time the GPU was busy, and the dev F1 after those
   steps (400 dev tweets, held out of everything learned).
2. **Fractional sweep**: ``profner tune`` of System 2 with 4 trials at ``--gpus-per-trial 0.25``,
   all at once (FIFO, one short epoch each): each trial's tweets/s, their sum, and that sum over
   the one-trial rate of step 1 (goal >= 3), and the seconds before the first trial trained.
3. **Served**: the sweep's best trial behind ``profner serve sweep:... --num-gpus 0.5``; one
   tweet's answer and the device ``/model`` reports.

Prints one JSON object (one line with ``--json``). Exits 2 at once where torch sees no CUDA
device, unless ``--device cpu``: the same steps on the CPU (no fractional GPUs), a rehearsal
that checks the script end to end where no GPU is (its figures mean nothing). Needs only the project's declared dependencies (the GPU box gets them through
``../shared/tools/gpu-bundle``).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml
from training import step_costs  # bench/training.py, beside this file

from profner_models.config import data_root, deep_merge, load_config
from profner_models.tasks import validate
from profner_models.training import fit, load_task_data

PORT = 8765
SYSTEMS = {"system1": ("transformer_e5", {}),
           "system2": ("rnn", {"model": {"backbone": {"words": {"vectors": None, "tuning": "full"}}}})}


def system_config(name: str, steps: int, device: str) -> dict:
    config_name, override = SYSTEMS[name]
    config = deep_merge(load_config(config_name), override)
    config["data"]["train_on_dev"] = False
    config["training"].update(device=device, epochs=1, max_steps=steps, threads=2)
    return config


def alone(name: str, data: Path, steps: int, device: str) -> dict:
    """Step costs, then a short fit and its dev F1."""
    config = system_config(name, steps, device)
    train, dev = load_task_data(config, data)
    costs = step_costs(copy.deepcopy(config), train, dev[:64], steps=20)
    started = time.perf_counter()
    result = fit(config, train, dev[:400], progress=False)
    return {**costs, "fit_s": round(time.perf_counter() - started, 1), "steps": steps,
            "f1_7b": round(result.best_metrics["f1_7b"], 4),
            "f1_7a": round(result.best_metrics["f1_7a"], 4)}


def sweep(data: Path, steps: int, tmp: Path, device: str) -> dict:
    from trainables.runner import SweepOptions, run_sweep
    from trainables.tracking import client

    config = system_config("system2", steps, device)
    gpus = 0.25 if device == "cuda" else 0.0
    base = tmp / "base.yaml"
    base.write_text(yaml.safe_dump(config), encoding="utf-8")
    study = tmp / "gpu_sweep.yaml"
    study.write_text(yaml.safe_dump({
        "study": "gpu_sweep", "base": str(base), "metric": "f1_7b", "mode": "max",
        "space": {"training": {"lr": {"dist": "loguniform", "low": 1e-3, "high": 5e-3}}}}),
        encoding="utf-8")
    started = time.time()
    result = run_sweep(SweepOptions(
        space=str(study), data_dir=str(data), num_samples=4, max_concurrent=4,
        gpus_per_trial=gpus, cpus_per_trial=1, scheduler="fifo", name="gpu",
        storage=str(tmp / "runs"), tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        n_initial_points=4, report=False))
    wall = time.time() - started
    training = validate(config)["training"]
    per_step = training["batch_size"] * (training["cuda_batch_scale"] if gpus else 1)
    trials = []
    for run in client(result.tracking_uri).search_runs(
            [result.experiment_id], "tags.`profner.kind` = 'trial'"):
        metrics = run.data.metrics
        tweets = min(metrics["train_docs"], steps * per_step)
        trials.append({"trial": run.data.tags.get("trial_id"), "device": run.data.tags.get("device"),
                       "tweets_per_s": round(tweets / metrics["epoch_seconds"], 1),
                       "started_s": round(run.info.start_time / 1000 - started, 1),
                       "f1_7b": round(metrics.get("f1_7b", float("nan")), 4)})
    return {"sweep_dir": str(result.sweep_dir), "wall_s": round(wall, 1), "trials": trials,
            "together_tweets_per_s": round(sum(t["tweets_per_s"] for t in trials), 1),
            "first_trial_started_s": min(t["started_s"] for t in trials)}


def served(sweep_dir: str, device: str) -> dict:
    profner = [sys.executable, "-m", "profner_models.cli.main", "serve"]
    gpus = "0.5" if device == "cuda" else "0"
    subprocess.run([*profner, f"sweep:{sweep_dir}", "--num-gpus", gpus, "--port", str(PORT),
                    "--detach"], check=True, timeout=300)
    try:
        body = json.dumps({"text": "Mi hermana es enfermera en el hospital de Móstoles"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{PORT}/predict", body,
                                         {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            prediction = json.loads(answer.read())["predictions"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/model", timeout=60) as answer:
            device = json.loads(answer.read()).get("device")
        return {"entities": prediction["entities"], "device": device}
    finally:
        subprocess.run([*profner, "--stop", "--port", str(PORT)], timeout=180)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: <data root>/profner")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: a rehearsal of the script where no GPU is")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device here", file=sys.stderr)
        return 2
    data = args.data or data_root() / "profner"
    started = time.perf_counter()
    report: dict = {"gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                    "device": args.device, "torch": torch.__version__}
    for name in SYSTEMS:
        report[name] = alone(name, data, args.steps, args.device)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        report["sweep"] = sweep(data, args.steps // 2, Path(tmp), args.device)
        one = report["system2"]["tweets_per_s"]
        report["sweep"]["together_over_one"] = round(report["sweep"]["together_tweets_per_s"] / one, 2)
        report["served"] = served(report["sweep"]["sweep_dir"], args.device)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
