"""Training speed and quality of a config: seconds per epoch, parameters, dev metrics.

    python bench/training.py [--config rnn] [--data DIR] [--epochs N] [--threads 2]
                             [--limit N] [--compare-bucketing] [--quick] [--json]

Data: a corpus root (default: the bundled sample); dev is the corpus's valid split or the
config's seeded fraction of train. ``--quick``: 400 train documents, 1 epoch (< 2 minutes).
``--compare-bucketing``: the same run again with plain random batches (``training.bucketing:
false``), reporting both seconds per epoch, tokens/s and the share of padding.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import torch

from profner_models.config import apply_overrides, load_config
from profner_models.text.features import bucket_batches
from profner_models.text.tokenize import tokenize
from profner_models.training import fit, load_task_data


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
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    config = apply_overrides(load_config(args.config), args.set)
    config.setdefault("training", {})["threads"] = args.threads
    limit, epochs = (400, 1) if args.quick else (args.limit, args.epochs)
    if epochs:
        config["training"]["epochs"] = epochs
    started = time.perf_counter()
    train, dev = load_task_data(config, args.data)
    train = train[:limit] if limit else train
    tokens = sum(len(tokenize(doc.text)) for doc in train)
    fit_started = time.perf_counter()
    result = fit(config, train, dev, progress=not args.json)
    total = time.perf_counter() - fit_started
    seconds = [row["epoch_seconds"] for row in result.history]
    report = {
        "config": args.config,
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


def pad_share(docs, config: dict, bucketing: bool) -> float:
    """Share of padded word positions in one epoch's training batches."""
    lengths = [max(1, len(tokenize(doc.text))) for doc in docs]
    batches = bucket_batches(lengths, int(config["training"]["batch_size"]), True,
                             random.Random(0), bucketing)
    padded = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    return 1 - sum(lengths) / padded


if __name__ == "__main__":
    sys.exit(main())
