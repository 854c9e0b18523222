"""ProfNER (SMM4H 2021 task 7) as a task of the platform: 7a tweet label + 7b entity tags.

Heads: ``classify`` (a document head, labels "0"/"1") and ``tag`` (a word head over the tag set
of ``data.types`` in ``data.scheme``). Scored with the official strict 7a/7b metrics.

7a rule (``model.label_from_entities``, default True): the label is 1 when the classifier
head's probability is >= 0.5 *or* the tagger found an entity; ``probability`` is always the
classifier head's. Why: the gold 7a label is 1 exactly when a tweet has an entity, and on the
seeded 20% dev split of ProfNER train (``fit`` reports both: ``f1_7a`` with this rule,
``f1_7a_head`` without it) the union stayed within 0.007 F1 of the head alone with the
``rnn_pooler`` head (4 runs, every epoch: -0.006 to +0.003) and was 0.03-0.07 better with the
weaker ``pooled_linear`` head (e.g. 0.8421 vs 0.8067 at epoch 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch

from profner_models.documents import Document, Prediction, Span
from profner_models.models import (
    BackboneOutput,
    Encoded,
    HeadOutput,
    TrainedModel,
    encode_text,
    scored_batches,
)
from profner_models.models.heads import MarginalDecoder
from profner_models.sample import PROFNER_SAMPLE
from profner_models.tasks.base import ModelConfig, Task, TaskConfig, tasks
from profner_models.tasks.metrics import score_7a, score_7b
from profner_models.text.gazetteer import Gazetteer
from profner_models.text.tags import decode, encode, flat_spans, tag_set
from profner_models.text.tokenize import Token

ROLES = ("classify", "tag")


class ProfnerModelConfig(ModelConfig):
    label_from_entities: bool = True
    """7a: the classifier's label OR "an entity was found" (module docstring)."""


class ProfnerConfig(TaskConfig):
    task: Literal["profner"] = "profner"
    model: ProfnerModelConfig


@tasks.register("profner")
class ProfnerTask(Task):
    metric = "f1_7b"
    shown_metrics = ("loss", "f1_7a", "f1_7b")
    schema = ProfnerConfig

    def sample_dir(self) -> Path:
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
                raise ValueError(f"unknown head role {role!r} in model.heads ({' | '.join(ROLES)})")
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

    def evaluate(self, model: TrainedModel, gold: Sequence[Document], encoded: Sequence[Encoded],
                 batch_size: int = 128) -> dict[str, float]:
        """Dev loss and official strict 7a/7b scores (plus ``f1_7a_head``: the classifier alone)."""
        network = model.network
        predictions: list[Prediction | None] = [None] * len(encoded)
        loss_sum = 0.0
        for batch, items, output, heads in scored_batches(network, encoded, batch_size,
                                                          with_targets=True):
            loss_sum += network.loss(heads).item() * len(batch)
            for index, prediction in zip(batch, decode_batch(model, items, output, heads)):
                predictions[index] = prediction
        pred_docs = [p.as_document(d.id, d.text) for d, p in zip(gold, predictions)]
        head_docs = [Document(d.id, d.text, p.entities, p.head_label) for d, p in zip(gold, predictions)]
        return {"loss": loss_sum / max(1, len(encoded)), **self.score(model, gold, pred_docs),
                "f1_7a_head": score_7a(gold, head_docs)["f1"]}

    def score(self, model: TrainedModel, gold: Sequence[Document],
              predicted: Sequence[Document]) -> dict[str, float]:
        """Official strict 7a and 7b scores and their mean."""
        metrics = {**_prefixed(score_7a(gold, predicted), "7a"),
                   **_prefixed(score_7b(gold, predicted, types=model.config["data"]["types"]), "7b")}
        metrics["f1_mean"] = (metrics["f1_7a"] + metrics["f1_7b"]) / 2
        return metrics

    def predict_averaged(self, models: Sequence[TrainedModel],
                         weights: Mapping[str, Sequence[float]], texts: Sequence[str],
                         batch_size: int = 64, device: torch.device | None = None,
                         entity_threshold: float = 0.5) -> list[Prediction]:
        return predict_averaged(models, weights, texts, batch_size, device, entity_threshold)

    def predict(self, model: TrainedModel, texts: Sequence[str], batch_size: int = 64,
                device: torch.device | None = None) -> list[Prediction]:
        encoded = [encode_text(text, model.gazetteer) for text in texts]
        out: list[Prediction | None] = [None] * len(encoded)
        for batch, items, output, heads in scored_batches(model.network, encoded, batch_size, device):
            for index, prediction in zip(batch, decode_batch(model, items, output, heads)):
                out[index] = prediction
        return out  # type: ignore[return-value]


def predict_averaged(models: Sequence[TrainedModel], weights: Mapping[str, Sequence[float]],
                     texts: Sequence[str], batch_size: int = 64,
                     device: torch.device | None = None,
                     entity_threshold: float = 0.5) -> list[Prediction]:
    """Members' 7a probabilities (``weights["classify"]``) and per-word tag probabilities (CRF
    marginals, ``weights["tag"]``) averaged, each role's weights summing to 1 (0: that member's
    output is not used), tags decoded from them with the scheme's invalid moves forbidden
    (``profner_models.ensemble``). ``entity_threshold``: the probability of "some entity tag"
    over which a lone word leaves ``O`` (0.5: the most probable path)."""
    first = models[0]
    labels, scheme = first.labels["tag"], first.config["data"]["scheme"]
    probability = torch.zeros(len(texts))
    per_word: list[torch.Tensor | None] = [None] * len(texts)
    encoded: list[Encoded] = []
    for model, doc_weight, tag_weight in zip(models, weights["classify"], weights["tag"]):
        if not (doc_weight or tag_weight):
            continue
        network = model.network
        encoded = [encode_text(text, model.gazetteer) for text in texts]
        for batch, items, output, heads in scored_batches(network, encoded, batch_size, device):
            if doc_weight:
                doc = network.heads["classify"].probabilities(heads["classify"].scores)[:, 1]
                probability[batch] += doc_weight * doc.float().cpu()
            if not tag_weight:
                continue
            words = network.heads["tag"].marginals(heads["tag"].scores, output.mask).cpu()
            for row, index in enumerate(batch):
                mine = tag_weight * words[row, : len(items[row].words)]
                per_word[index] = mine if per_word[index] is None else per_word[index] + mine
    decoder = MarginalDecoder(labels, scheme, entity_threshold)
    from_entities = first.config["model"]["label_from_entities"]
    predictions = []
    for index, enc in enumerate(encoded):
        entities = []
        if enc.tokens:
            path = decoder(per_word[index].numpy())
            entities = decode(enc.tokens, [labels[t] for t in path], scheme, enc.text)
        head_label = int(probability[index] >= 0.5)
        label = int(head_label or (from_entities and bool(entities)))
        predictions.append(Prediction(label, float(probability[index]), entities, head_label))
    return predictions


def decode_batch(model: TrainedModel, batch: Sequence[Encoded], output: BackboneOutput,
                 heads: dict[str, HeadOutput]) -> list[Prediction]:
    """Heads' scores for a batch -> one ``Prediction`` per document (entity offsets from the
    documents' tokens, so they index the original text)."""
    network = model.network
    scheme = model.config["data"]["scheme"]
    from_entities = model.config["model"]["label_from_entities"]
    probs = [0.0] * len(batch)
    if "classify" in heads:  # a list: reading a tensor row by row dispatched ops per row
        probs = network.heads["classify"].probabilities(heads["classify"].scores)[:, 1].tolist()
    tags = (network.heads["tag"].decode(heads["tag"].scores, output.mask)
            if "tag" in heads else None)
    predictions = []
    for row, enc in enumerate(batch):
        entities = []
        if tags is not None and enc.tokens:
            names = [model.labels["tag"][t] for t in tags[row]]
            entities = decode(enc.tokens, names, scheme, enc.text)
        head_label = int(probs[row] >= 0.5)
        label = int(head_label or (from_entities and bool(entities)))
        predictions.append(Prediction(label, float(probs[row]), entities, head_label))
    return predictions


def _flat_tags(tokens: list[Token], spans: Sequence[Span], scheme: str) -> list[str]:
    """Tags of the spans; of spans sharing a token (two inside one token, rare after the span
    policy) the outer is kept, as everywhere (``text.tags.flat_spans``)."""
    return encode(tokens, flat_spans(tokens, spans)[0], scheme)


def _prefixed(scores: dict, task: str) -> dict[str, float]:
    return {f"{k}_{task}": float(scores[k]) for k in ("precision", "recall", "f1")}
