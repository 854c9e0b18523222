"""``JointModel``: one backbone plus task heads, assembled from the config by the registries.

The head roles of ``config["model"]["heads"]`` and their labels and targets are the task's
(``profner_models.tasks``: ProfNER ``classify`` + ``tag``, MEDDOPROF ``tag`` + ``cls``). The
model never looks at architecture or task names: it only uses the ``base`` and ``Task``
interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from profner_models.architectures import (
    BackboneContext,
    BackboneOutput,
    DocumentHead,
    HeadContext,
    WordHead,
    backbones,
    task_heads,
)
from profner_models.documents import Document
from profner_models.gazetteer import Gazetteer
from profner_models.tasks import task_of
from profner_models.tokenize import Token, tokenize

PLACEHOLDER = "<empty>"  # the one word of a document with no token (heads need >= 1 word)


def labels_for(config: dict) -> dict[str, list[str]]:
    """The label list of each head role (saved as labels.json): the task's (``tasks``)."""
    return task_of(config).labels(config)


class JointModel(nn.Module):
    def __init__(self, config: dict, labels: dict[str, list[str]], context: BackboneContext) -> None:
        super().__init__()
        self.backbone = backbones.build(config["model"]["backbone"], context=context)
        scheme = config["data"].get("scheme", "BIO")
        self.heads = nn.ModuleDict({
            role: task_heads.build(block, context=HeadContext(
                word_dim=self.backbone.word_dim, sentence_dim=self.backbone.sentence_dim,
                labels=labels[role], scheme=scheme))
            for role, block in config["model"]["heads"].items()
        })
        weights = config.get("training", {}).get("loss_weights", {})
        self.loss_weights = {role: float(weights.get(role, 1.0)) for role in self.heads}

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[BackboneOutput, dict[str, torch.Tensor]]:
        output = self.backbone(features)
        return output, {role: head(output) for role, head in self.heads.items()}

    def loss(self, features: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the heads' losses (CE for 7a, CRF NLL for 7b)."""
        output, scores = self(features)
        total = torch.zeros((), device=output.words.device)
        for role, head in self.heads.items():
            if isinstance(head, WordHead):
                part = head.loss(scores[role], targets[role], output.mask)
            else:
                part = head.loss(scores[role], targets[role])
            total = total + self.loss_weights[role] * part
        return total

    def document_heads(self) -> dict[str, DocumentHead]:
        return {r: h for r, h in self.heads.items() if isinstance(h, DocumentHead)}

    def word_heads(self) -> dict[str, WordHead]:
        return {r: h for r, h in self.heads.items() if isinstance(h, WordHead)}


@dataclass
class Encoded:
    """A document made ready for the model: words with offsets, gazetteer flags, targets."""

    text: str
    tokens: list[Token]
    words: list[str]
    gazetteer: list[int] | None
    targets: dict[str, int | list[int]]


def encode_text(text: str, gazetteer: Gazetteer | None) -> Encoded:
    tokens = tokenize(text)
    words = [t.text for t in tokens] or [PLACEHOLDER]
    flags = gazetteer.flags(words) if gazetteer is not None else None
    return Encoded(text, tokens, words, flags, {})


def encode_document(doc: Document, config: dict, labels: dict[str, list[str]],
                    gazetteer: Gazetteer | None) -> Encoded:
    """``encode_text`` plus the training targets of each head role (the task's ``encode``)."""
    return task_of(config).encode(doc, config, labels, gazetteer)


def collate(model: JointModel, batch: Sequence[Encoded], with_targets: bool = True):
    """Features (and targets) tensors for a batch of encoded documents."""
    flags = [e.gazetteer for e in batch] if batch[0].gazetteer is not None else None
    features = model.backbone.featurize([e.words for e in batch], flags)
    if not with_targets:
        return features, {}
    targets = {}
    for role in model.heads:
        values = [e.targets[role] for e in batch]
        if isinstance(values[0], list):
            width = features_width(batch)
            targets[role] = torch.tensor([v + [0] * (width - len(v)) for v in values])
        else:
            targets[role] = torch.tensor(values)
    return features, targets


def features_width(batch: Sequence[Encoded]) -> int:
    return max(len(e.words) for e in batch)
