"""Training speed and quality of a config: what a step costs, seconds per epoch, dev metrics.

    python bench/training.py [--config rnn] [--data DIR] [--epochs N] [--threads 2]
                             [--limit N] [--steps K] [--device cpu|cuda] [--compare-bucketing]
                             [--quick] [--json]

Data: a corpus root (default: the bundled sample); dev is the corpus's valid split or the
config's seeded fraction of train. ``--quick``: 400 train documents, 1 epoch (< 2 minutes).
``--compare-bucketing``: the same run again with plain random batches (``training.bucketing:
false``), reporting both seconds per epoch, tokens/s and the share of padding.

What a step costs (``profner_models.opcount``), measured before the fit on ``--steps`` training
steps after two warm-up ones, at the config's batch size: ``ops_per_step`` (aten ops dispatched
per step: forward, loss, backward, clipping, optimiser, schedule; each is about one kernel
launch on a GPU), ``kernel_ops_per_step`` (without views), ``ops_per_step_fused_rnn`` (with each
GRU/packed-LSTM call as one op forward and one backward, as cuDNN runs it: PyTorch dispatches
them one time step at a time on the CPU), the top ops and modules, host ms per step; ``ops_per_tweet`` at prediction (one tweet at a time); on a CUDA device also tweets/s,
peak memory and the share of the step time the GPU was busy (``torch.profiler``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import random
import sys
import time
from pathlib import Path

import torch

from profner_models.config import apply_overrides, load_config
from profner_models.documents import Document
from profner_models.models.joint import TrainedModel
from profner_models.opcount import OpCounter
from profner_models.predict import Predictor
from profner_models.tasks import validate
from profner_models.text.features import bucket_batches
from profner_models.text.tokenize import tokenize
from profner_models.training import (
    Trainer,
    build_model,
    fit,
    held_out_of,
    load_task_data,
    resolve_device,
    seed_everything,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="rnn")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use the first N train documents")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compare-bucketing", action="store_true",
                        help="also run with plain random batches and compare")
    parser.add_argument("--steps", type=int, default=10, help="steps the op count averages")
    parser.add_argument("--device", default=None, help="training.device (default: the config's)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = apply_overrides(load_config(args.config), args.set)
    config.setdefault("training", {})["threads"] = args.threads
    if args.device:
        config["training"]["device"] = args.device
    limit, epochs = (400, 1) if args.quick else (args.limit, args.epochs)
    if epochs:
        config["training"]["epochs"] = epochs
    started = time.perf_counter()
    train, dev = load_task_data(config, args.data)
    train = train[:limit] if limit else train
    tokens = sum(len(tokenize(doc.text)) for doc in train)
    costs = step_costs(config, train, dev, args.steps)
    fit_started = time.perf_counter()
    result = fit(config, train, dev, progress=not args.json)
    total = time.perf_counter() - fit_started
    seconds = [row["epoch_seconds"] for row in result.history]
    report = {
        "config": args.config,
        **costs,
        "data": str(args.data or "bundled sample"),
        "threads": torch.get_num_threads(),
        "train_docs": len(train),
        "dev_docs": len(dev),
        "parameters": result.model.num_parameters,
        "epochs_run": len(result.history),
        "epoch_seconds_mean": round(sum(seconds) / len(seconds), 2),
        "epoch_cpu_seconds_mean": round(
            sum(row["epoch_cpu_seconds"] for row in result.history) / len(seconds), 2),
        "tokens_per_s": round(tokens / (sum(seconds) / len(seconds)), 1),
        "pad_share": round(pad_share(train, config, bucketing=True), 4),
        "fit_seconds": round(total, 1),
        "load_seconds": round(fit_started - started, 1),
        "best_epoch": result.best_epoch,
        **{k: round(v, 4) for k, v in result.best_metrics.items()
           if k.startswith(("f1", "precision", "recall")) or k == "loss"},
    }
    if args.compare_bucketing:
        plain = copy.deepcopy(config)
        plain["training"]["bucketing"] = False
        baseline = fit(plain, train, dev, progress=not args.json).history
        plain_seconds = sum(row["epoch_seconds"] for row in baseline) / len(baseline)
        report.update(
            no_bucketing_epoch_seconds_mean=round(plain_seconds, 2),
            no_bucketing_tokens_per_s=round(tokens / plain_seconds, 1),
            no_bucketing_pad_share=round(pad_share(train, config, bucketing=False), 4),
            bucketing_speedup=round(plain_seconds / report["epoch_seconds_mean"], 2))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{'epoch':>5} {'sec':>6} {'cpu_s':>6} {'loss':>7} {'f1_7a':>6} {'f1_7b':>6} {'f1_mean':>7}")
        for row in result.history:
            print(f"{row['epoch']:>5} {row['epoch_seconds']:>6.1f} {row['epoch_cpu_seconds']:>6.1f} "
                  f"{row['loss']:>7.3f} "
                  f"{row['f1_7a']:>6.3f} {row['f1_7b']:>6.3f} {row['f1_mean']:>7.3f}")
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return 0


def step_costs(config: dict, train: list[Document], dev: list[Document], steps: int) -> dict:
    """Ops (and on a GPU time, memory, busy share) of ``steps`` training steps of a fresh model,
    and ops of predicting one tweet at a time."""
    config = validate(config)
    cfg = config["training"]
    torch.set_num_threads(int(cfg["threads"] or 1))
    device = resolve_device(cfg["device"], cfg["precision"])
    seed_everything(int(cfg["seed"]))
    model, encoded, positive = build_model(config, train, held_out_of(train, dev))
    model.network.to(device)
    trainer = Trainer(model, encoded, positive, cfg, device)
    trainer.begin_epoch(1)  # dropout on, as a fit trains
    batches = list(itertools.islice(trainer.batches(1), steps + 2))
    if len(batches) < steps + 2:
        raise ValueError(f"--steps {steps}: the data makes only {len(batches) - 2} steps")
    for features, targets in batches[:2]:  # warm-up: lazy state, allocator, optimiser moments
        trainer.train_step(features, targets)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    with OpCounter() as ops:
        for features, targets in batches[2:]:
            trainer.train_step(features, targets)
    started = time.perf_counter()
    for features, targets in batches[2:]:  # timed apart: counting costs Python time per op
        trainer.train_step(features, targets)
    if cuda:
        torch.cuda.synchronize(device)
    step_s = (time.perf_counter() - started) / steps
    tweets = sum(len(next(iter(t.values()))) for _, t in batches[2:]) / steps
    result = {"batch_size": int(cfg["batch_size"]), "device": str(device),
              "ops_per_step": round(ops.total / steps), "kernel_ops_per_step": round(ops.kernels / steps),
              # each recurrent call as one op forward and one backward (cuDNN; oneDNN's LSTM)
              "ops_per_step_fused_rnn": round(ops.fused_rnn_total() / steps),
              "step_ops_top": {k: round(v / steps) for k, v in ops.by_name.most_common(8)},
              "step_ops_by_module": {k or "(outside modules)": round(v / steps)
                                     for k, v in ops.by_module.most_common(8)},
              "host_ms_per_step": round(1000 * step_s, 2),
              "tweets_per_s": round(tweets / step_s, 1),
              **tweet_costs(model, [doc.text for doc in dev[:20]], device)}
    if cuda:
        result.update(peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                      gpu_busy_share=gpu_busy_share(trainer, batches[2:]))
    return result


def tweet_costs(model: TrainedModel, texts: list[str], device: torch.device) -> dict:
    """Ops dispatched to predict one tweet at a time (mean over ``texts``)."""
    predictor = Predictor(model, batch_size=1, device=device)
    predictor.predict(texts[:2])
    with OpCounter() as ops:
        for text in texts:
            predictor.predict([text])
    return {"ops_per_tweet": round(ops.total / len(texts)),
            "kernel_ops_per_tweet": round(ops.kernels / len(texts))}


def gpu_busy_share(trainer: Trainer, batches: list) -> float:
    """The share of the steps' wall time during which a CUDA kernel ran."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        started = time.perf_counter()
        for features, targets in batches:
            trainer.train_step(features, targets)
        torch.cuda.synchronize()
        wall_us = (time.perf_counter() - started) * 1e6
    busy_us = sum(event.device_time for event in prof.events()
                  if event.device_type == torch.autograd.DeviceType.CUDA)
    return round(min(1.0, busy_us / wall_us), 3)


def pad_share(docs: list[Document], config: dict, bucketing: bool) -> float:
    """Share of padded word positions in one epoch's training batches."""
    lengths = [max(1, len(tokenize(doc.text))) for doc in docs]
    batches = bucket_batches(lengths, int(config["training"]["batch_size"]), True,
                             random.Random(0), bucketing)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths) / padded


if __name__ == "__main__":
    sys.exit(main())
