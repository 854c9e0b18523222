"""ProfNER (SMM4H 2021 task 7) as a task of the platform: 7a tweet label + 7b entity tags.

Heads: ``classify`` (a document head, labels "0"/"1") and ``tag`` (a word head over the tag set
of ``data.types`` in ``data.scheme``). Scored with the official strict 7a/7b metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from profner_models.architectures import WordHead
from profner_models.documents import Document, Span
from profner_models.features import bucket_batches
from profner_models.gazetteer import Gazetteer
from profner_models.model import Encoded, collate, encode_text
from profner_models.predict import Prediction, decode_batch, predict_encoded
from profner_models.tags import encode, tag_set
from profner_models.tasks import Task, tasks
from profner_models.tokenize import Token

log = logging.getLogger(__name__)


@tasks.register("profner")
class ProfnerTask(Task):
    metric = "f1_7b"

    def sample_dir(self) -> Path:
        from profner_models.sample import PROFNER_SAMPLE

        return PROFNER_SAMPLE

    def labels(self, config: dict) -> dict[str, list[str]]:
        data = config["data"]
        labels = {}
        for role in config["model"]["heads"]:
            if role == "classify":
                labels[role] = ["0", "1"]
            elif role == "tag":
                labels[role] = list(tag_set(data["types"], data["scheme"]))
            else:
                raise ValueError(f"unknown head role {role!r} in model.heads (classify | tag)")
        return labels

    def encode(self, doc: Document, config: dict, labels: dict[str, list[str]],
               gazetteer: Gazetteer | None) -> Encoded:
        enc = encode_text(doc.text, gazetteer)
        if "classify" in labels:
            enc.targets["classify"] = int(doc.label or 0)
        if "tag" in labels:
            index = {tag: i for i, tag in enumerate(labels["tag"])}
            tags = _flat_tags(enc.tokens, doc.spans, config["data"]["scheme"]) if enc.tokens else ["O"]
            enc.targets["tag"] = [index[t] for t in tags]
        return enc

    def evaluate(self, model, gold: Sequence[Document], encoded: Sequence[Encoded],
                 batch_size: int = 128) -> dict[str, float]:
        """Dev loss and official strict 7a/7b scores (plus ``f1_7a_head``: the classifier alone)."""
        from profner_models.metrics import score_7a, score_7b

        network = model.network
        device = next(network.parameters()).device
        network.eval()
        predictions: list[Prediction | None] = [None] * len(encoded)
        loss_sum = 0.0
        with torch.inference_mode():
            for batch in bucket_batches([len(e.words) for e in encoded], batch_size, False):
                items = [encoded[i] for i in batch]
                features, targets = collate(network, items)
                features = {k: v.to(device) for k, v in features.items()}
                output, scores = network(features)
                for role, head in network.heads.items():
                    target = targets[role].to(device)
                    part = (head.loss(scores[role], target, output.mask) if isinstance(head, WordHead)
                            else head.loss(scores[role], target))
                    loss_sum += network.loss_weights[role] * part.item() * len(batch)
                for index, prediction in zip(batch, decode_batch(model, items, output, scores)):
                    predictions[index] = prediction
        metrics = {"loss": loss_sum / max(1, len(encoded))}
        types = model.config["data"]["types"]
        pred_docs = [Document(d.id, d.text, p.entities, p.label) for d, p in zip(gold, predictions)]
        head_docs = [Document(d.id, d.text, p.entities, p.head_label) for d, p in zip(gold, predictions)]
        metrics.update(_prefixed(score_7a(gold, pred_docs), "7a"))
        metrics["f1_7a_head"] = score_7a(gold, head_docs)["f1"]
        metrics.update(_prefixed(score_7b(gold, pred_docs, types=types), "7b"))
        metrics["f1_mean"] = (metrics["f1_7a"] + metrics["f1_7b"]) / 2
        return metrics

    def predict(self, model, texts: Sequence[str], batch_size: int = 64,
                device: torch.device | None = None) -> list[Prediction]:
        encoded = [encode_text(text, model.gazetteer) for text in texts]
        return predict_encoded(model, encoded, batch_size, device)


def _flat_tags(tokens: list[Token], spans: Sequence[Span], scheme: str) -> list[str]:
    """Tags of the spans; spans sharing a token with an earlier (kept) one are left out, since
    a flat scheme cannot hold both (rare after the span policy: two spans inside one token)."""
    try:
        return encode(tokens, spans, scheme)
    except ValueError:
        kept: list[Span] = []
        for span in spans:
            try:
                encode(tokens, [*kept, span], scheme)
            except ValueError:
                log.warning("span %s shares a token with another span: not trained on", span)
            else:
                kept.append(span)
        return encode(tokens, kept, scheme)


def _prefixed(scores: dict, task: str) -> dict[str, float]:
    return {f"{k}_{task}": float(scores[k]) for k in ("precision", "recall", "f1")}
