"""Quality against the peer: spaCy's stock CPU NER and our model on the same unseen dev split.

    python bench/peer_spacy.py --model MODEL_DIR [--data ../shared/data/profner]
                               [--out runs/peer-spacy] [--spacy-model DIR] [--json]

MODEL_DIR must be a model trained with its dev split held out (``data.train_on_dev: false``):
its config gives the split (``data.dev_fraction`` / ``dev_seed``). spaCy's pipeline
(``spacy init config --lang es --pipeline ner --optimize efficiency``) is trained with
``spacy train`` on the same training part, early-stopping on a seeded 10% slice of it, so
neither system sees the dev split. Both are scored there with our scorer (official strict 7b;
7a = any entity found for spaCy, our model's rule for ours). ``--spacy-model`` reuses a trained
spaCy model dir instead of training one (training takes ~15 min of one core here).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import spacy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spacy_peer  # noqa: E402

from profner_models.artifacts import load  # noqa: E402
from profner_models.config import data_root  # noqa: E402
from profner_models.documents import Document  # noqa: E402
from profner_models.predict import Predictor  # noqa: E402
from profner_models.spans import apply_span_policy  # noqa: E402
from profner_models.tasks.metrics import score_7a, score_7b  # noqa: E402
from profner_models.training import load_task_data  # noqa: E402


def scores(gold: list[Document], predicted: list[Document], types: Sequence[str]) -> dict[str, float]:
    predicted = [Document(g.id, g.text, p.spans, p.label) for g, p in zip(gold, predicted)]
    out = {f"{k}_7b": round(v, 4) for k, v in score_7b(gold, predicted, types=types).items()
           if k in ("precision", "recall", "f1")}
    out["f1_7a"] = round(score_7a(gold, predicted)["f1"], 4)
    return out


def run(model_dir: Path, data: Path, out: Path, spacy_model: Path | None) -> dict:
    torch.set_num_threads(1)
    model = load(model_dir)
    config = model.config
    if config["data"].get("train_on_dev"):
        raise SystemExit(f"{model_dir}: trained on its dev split (data.train_on_dev): no unseen "
                         f"dev text to compare on; train it with --set data.train_on_dev=false")
    train, dev = load_task_data(config, data)
    types = config["data"]["types"]
    gold, _ = apply_span_policy(dev, types=types, overlap="keep_all")
    result = {"model": str(model_dir), "train_docs": len(train), "dev_docs": len(gold)}

    if spacy_model is None:
        order = list(range(len(train)))
        random.Random(13).shuffle(order)
        cut = len(order) // 10
        stop_slice = [train[i] for i in order[:cut]]
        fit_part = [train[i] for i in order[cut:]]
        started = time.process_time()
        spacy_model = spacy_peer.train(fit_part, stop_slice, out)
        result["spacy_train_cpu_s"] = round(time.process_time() - started, 1)
    nlp = spacy.load(spacy_model)
    texts = [doc.text for doc in gold]
    ours = [Document(d.id, d.text, p.entities, p.label)
            for d, p in zip(gold, Predictor(model).predict(texts))]
    result["ours"] = scores(gold, ours, types)
    result["spacy"] = scores(gold, spacy_peer.predict(nlp, texts), types)
    result["spacy_model"] = str(spacy_model)
    result["f1_7b_gain"] = round(result["ours"]["f1_7b"] - result["spacy"]["f1_7b"], 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="default: <data root>/profner")
    parser.add_argument("--out", type=Path, default=Path("runs/peer-spacy"))
    parser.add_argument("--spacy-model", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.model, args.data or data_root() / "profner", args.out, args.spacy_model)
    print(json.dumps(result, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
