"""MEDDOPROF NORM accuracy on gold mentions (no NER errors): index from the train part of the
seeded dev split (the one ``training.load_task_data`` makes), scored on the dev part's mentions.

    .venv/bin/python bench/meddoprof_norm.py [--config meddoprof_rnn] [--data DIR] [--json]
        [--set k=5 --set kinds=[mention,centroid] ...]   # NormConfig overrides (YAML values)

The index is built once; query-time settings (k, vote, kinds, string_match) are then varied on
it to print an ablation table. With ``--ablate`` the build-time settings (string keys without
accent folding / ending stripping, no templates, description rows) are rebuilt too, through an
encoder that embeds each distinct sentence once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from profner_models.config import data_root, load_config
from profner_models.norm.index import NormIndex
from profner_models.norm.meddoprof import build_norm, norm_descriptions, norm_mentions
from profner_models.training import load_task_data

BUILD_VARIANTS = [
    {"fold_accents": False},
    {"fold_accents": False, "strip_endings": False},
    {"templates": ["{}"]},
    {"kinds": ["description", "mention", "centroid"]},
]
QUERY_VARIANTS = [
    {"string_match": False, "k": 1},
    {"string_match": False, "k": 5},
    {"k": 1},
    {"k": 5},
    {"k": 10},
    {"k": 5, "vote": "majority"},
]


class MemoEncoder:
    """Each distinct sentence embedded once across the builds of an ablation."""

    def __init__(self, encoder) -> None:
        self.encoder, self.memo = encoder, {}

    def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:

        new = [s for s in dict.fromkeys(sentences) if s not in self.memo]
        if new:
            self.memo.update(zip(new, self.encoder.encode(new, **kwargs)))
        return np.stack([self.memo[s] for s in sentences])


def accuracy(index: NormIndex, gold: list[tuple[str, str]]) -> tuple[float, dict]:
    predictions = index.predict([text for text, _ in gold])
    right = [p.code == code for p, (_, code) in zip(predictions, gold)]
    by_source = Counter(p.source for p in predictions)
    hits = Counter(p.source for p, ok in zip(predictions, right) if ok)
    return sum(right) / len(gold), {s: f"{hits[s]}/{n}" for s, n in by_source.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="meddoprof_rnn")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ablate", action="store_true", help="also rebuild with BUILD_VARIANTS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    config["norm"] = dict(config.get("norm") or {})
    for item in args.set:
        key, _, value = item.partition("=")
        config["norm"][key] = yaml.safe_load(value)
    # A shipped config may be a refit (train_on_dev): the index must not hold the dev mentions.
    config["data"]["train_on_dev"] = False
    train, dev = load_task_data(config, args.data or data_root() / "meddoprof")
    gold = [(span.text, span.code) for doc in dev for span in doc.spans if span.code]
    started = time.perf_counter()
    index = build_norm(config, train)
    build_s = time.perf_counter() - started
    majority = Counter(span.code for doc in train for span in doc.spans if span.code).most_common(1)[0][0]
    rows = [{"setting": "majority code", "accuracy": sum(c == majority for _, c in gold) / len(gold)}]
    base = index.config
    for variant in [{}, *QUERY_VARIANTS]:
        index.config = replace(base, **variant)
        started = time.perf_counter()
        score, by_source = accuracy(index, gold)
        rows.append({"setting": variant or "config as given", "accuracy": score,
                     "by_source": by_source, "query_s": round(time.perf_counter() - started, 1)})
    if args.ablate:
        from profner_models.norm.index import NormIndex

        encoder = MemoEncoder(index.encoder)
        descriptions, mentions = norm_descriptions(config, train), norm_mentions(train)
        for variant in BUILD_VARIANTS:
            variant_index = NormIndex.build(descriptions, mentions, replace(base, **variant), encoder)
            score, by_source = accuracy(variant_index, gold)
            rows.append({"setting": {"build": variant}, "accuracy": score, "by_source": by_source})
    report = {"train_docs": len(train), "dev_docs": len(dev), "dev_mentions": len(gold),
              "index_rows": len(index.row_codes), "build_s": round(build_s, 1),
              "norm": {**config["norm"]}, "rows": rows}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return
    print(f"train docs {len(train)}, dev docs {len(dev)}, dev mentions {len(gold)}, "
          f"index rows {len(index.row_codes)}, build {build_s:.0f}s, norm {config['norm']}")
    for row in rows:
        print(f"  {row['accuracy']:.4f}  {row['setting']}  {row.get('by_source', '')}")


if __name__ == "__main__":
    main()
