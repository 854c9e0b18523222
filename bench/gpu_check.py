"""The GPU check: System 1 sweeps on a CUDA machine for real, then served on the GPU.

    python bench/gpu_check.py [--data ../shared/data/profner] [--steps 300] [--json]

On a machine with a CUDA GPU, in under 10 minutes:
1. a sweep of System 1 (multilingual-e5-small, ``configs/transformer_e5.yaml``) with 4 trials
   at ``--gpus-per-trial 0.25`` each, all at once, ``--steps`` training steps each on the real
   corpus (dev held out), precision fp32 or bf16 picked per trial;
2. asserts that every trial ran on cuda (its MLflow ``device`` tag), and prints each trial's
   training tweets/s and peak GPU memory;
3. the same config for a few steps on the CPU, for the GPU-vs-CPU ratio;
4. serves the best trial with ``profner serve sweep:... --num-gpus 0.5`` and queries it.

Exits 2 at once where torch sees no CUDA device. Prints one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml

from profner_models.config import data_root, load_config
from profner_models.training import fit, load_task_data

ROOT = Path(__file__).resolve().parents[1]
PORT = 8765


def study(path: Path, steps: int) -> Path:
    """transformer_e5 with a short fixed budget, and what the sweep varies."""
    raw = {"study": "gpu_check", "base": str(ROOT / "profner_models/configs/transformer_e5.yaml"),
           "metric": "f1_7b", "mode": "max",
           "space": {"data": {"train_on_dev": False},
                     "training": {"epochs": 1, "max_steps": steps, "select": "f1_7b",
                                  "device": "auto", "threads": 2,
                                  "lr": {"dist": "loguniform", "low": 5e-4, "high": 2e-3},
                                  "precision": {"dist": "choice", "options": ["fp32", "bf16"]}}}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def cpu_rate(data: Path, steps: int) -> float:
    config = load_config("transformer_e5")
    config["data"]["train_on_dev"] = False
    config["training"].update(epochs=1, max_steps=steps, device="cpu", threads=os.cpu_count())
    train, dev = load_task_data(config, data)
    started = time.perf_counter()
    fit(config, train, dev[:64], progress=False)
    return steps * config["training"]["batch_size"] / (time.perf_counter() - started)


def run(data: Path, steps: int) -> dict:
    from trainables.runner import SweepOptions, run_sweep
    from trainables.tracking import client

    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    started = time.perf_counter()
    result = run_sweep(SweepOptions(
        space=str(study(tmp / "gpu_check.yaml", steps)), data_dir=str(data), num_samples=4,
        max_concurrent=4, gpus_per_trial=0.25, cpus_per_trial=2, scheduler="fifo",
        name="gpu", storage=str(tmp / "runs"), tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
        n_initial_points=4, report=False))
    sweep_s = time.perf_counter() - started
    mlflow = client(result.tracking_uri)
    trials = []
    for run in mlflow.search_runs([result.experiment_id], "tags.`profner.kind` = 'trial'"):
        metrics = run.data.metrics
        batch = 16
        trials.append({"trial": run.data.tags["trial_id"], "device": run.data.tags.get("device"),
                       "precision": run.data.params.get("training.precision"),
                       "f1_7b": metrics.get("f1_7b"),
                       "gpu_memory_mb": metrics.get("gpu_memory_mb"),
                       "tweets_per_s": steps * batch / metrics["epoch_seconds"]})
    assert len(trials) == 4 and all(t["device"].startswith("cuda") for t in trials), trials
    cpu = cpu_rate(data, max(10, steps // 20))
    served = serve_and_query(result.sweep_dir)
    gpu = max(t["tweets_per_s"] for t in trials)
    return {"gpu": torch.cuda.get_device_name(0), "sweep_s": round(sweep_s, 1),
            "trials": trials, "cpu_tweets_per_s": round(cpu, 1),
            "gpu_over_cpu": round(gpu / cpu, 1), "served": served}


def serve_and_query(sweep_dir: Path) -> dict:
    profner = [sys.executable, "-m", "profner_models.cli.main", "serve"]
    subprocess.run([*profner, f"sweep:{sweep_dir}", "--num-gpus", "0.5", "--port", str(PORT),
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
        subprocess.run([*profner, "--stop", "--port", str(PORT)], timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: <data root>/profner")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device here", file=sys.stderr)
        return 2
    result = run(args.data or data_root() / "profner", args.steps)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
