"""``Predictor``: a trained model applied to raw texts, batched, under ``torch.inference_mode``.

``Predictor.predict`` is the ``predict`` hook of the model's task (``profner_models.tasks``);
``predict_encoded`` and ``decode_batch`` are the ProfNER path described here.

7a rule (``model.label_from_entities`` in the config, default True): the label is 1 when the
classifier head's probability is >= 0.5 *or* the tagger found an entity; ``probability`` is
always the classifier head's. Why: the gold 7a label is 1 exactly when a tweet has an entity,
and on the seeded 20% dev split of ProfNER train (``fit`` reports both: ``f1_7a`` with this
rule, ``f1_7a_head`` without it) the union stayed within 0.007 F1 of the head alone with the
``rnn_pooler`` head (4 runs, every epoch: -0.006 to +0.003) and was 0.03-0.07 better with the
weaker ``pooled_linear`` head (e.g. 0.8421 vs 0.8067 at epoch 3).

Threads: one tweet at a time is fastest with ``torch.set_num_threads(1)``; on a busy 2-core
machine 2 intra-op threads spin against other processes (bench/inference.py, load average 5-8:
p50 1190 ms with 2 threads, 29 ms with 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from profner_models.architectures import BackboneOutput
from profner_models.artifacts import TrainedModel, load
from profner_models.documents import Span
from profner_models.features import bucket_batches
from profner_models.model import Encoded, collate
from profner_models.tags import decode
from profner_models.tasks import task_of


@dataclass
class Prediction:
    """One text's 7a label and probability and its 7b entities (offsets into the text given)."""

    label: int
    probability: float
    entities: list[Span] = field(default_factory=list)
    head_label: int | None = None
    """The classifier head's own label (before ``label_from_entities``)."""

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "probability": self.probability,
            "entities": [{"start": s.start, "end": s.end, "type": s.type, "text": s.text,
                          **({"class": s.cls, "code": s.code}
                             if s.cls is not None or s.code is not None else {})}
                         for s in self.entities],
        }


class Predictor:
    """Load once (a model dir or a ``TrainedModel``), then ``predict`` lists of texts."""

    def __init__(self, model: str | Path | TrainedModel, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        self.model = model if isinstance(model, TrainedModel) else load(model)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model.network.to(self.device)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts, not one string")
        # the task's (MEDDOPROF: windows, CLASS and NORM codes)
        return task_of(self.model.config).predict(self.model, texts, self.batch_size, self.device)


def predict_encoded(model: TrainedModel, encoded: Sequence[Encoded], batch_size: int = 64,
                    device: torch.device | None = None) -> list[Prediction]:
    """Predictions for already tokenised documents, in input order."""
    out: list[Prediction | None] = [None] * len(encoded)
    for batch, items, output, scores in scored_batches(model.network, encoded, batch_size, device):
        for index, prediction in zip(batch, decode_batch(model, items, output, scores)):
            out[index] = prediction
    return out  # type: ignore[return-value]


def scored_batches(network: torch.nn.Module, encoded: Sequence[Encoded], batch_size: int,
                   device: torch.device | None = None) -> Iterator[tuple]:
    """``(indices, items, backbone output, head scores)`` per length-sorted batch, in eval mode
    under ``torch.inference_mode``; the network's training mode is restored afterwards."""
    device = device or next(network.parameters()).device
    was_training = network.training
    if was_training:  # toggling walks every submodule: ~0.3 ms per call, 8% of a tweet's time
        network.eval()
    try:
        with torch.inference_mode():
            for batch in bucket_batches([len(e.words) for e in encoded], batch_size, False):
                items = [encoded[i] for i in batch]
                features, _ = collate(network, items, with_targets=False)
                output, scores = network({k: v.to(device) for k, v in features.items()})
                yield batch, items, output, scores
    finally:
        if was_training:
            network.train()


def decode_batch(model: TrainedModel, batch: Sequence[Encoded], output: BackboneOutput,
                 scores: dict[str, torch.Tensor]) -> list[Prediction]:
    """Heads' scores for a batch -> one ``Prediction`` per document (entity offsets from the
    documents' tokens, so they index the original text)."""
    network = model.network
    scheme = model.config["data"]["scheme"]
    from_entities = model.config["model"].get("label_from_entities", True)
    probs = torch.zeros(len(batch))
    if "classify" in scores:
        probs = network.heads["classify"].probabilities(scores["classify"])[:, 1].float().cpu()
    tags = network.heads["tag"].decode(scores["tag"], output.mask) if "tag" in scores else None
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
