"""A model as one thing: ``JointModel`` (one backbone plus task heads, built by the registries),
``TrainedModel`` (the network with its config, labels, gazetteer and task resources), and the
way documents reach it (``Encoded``, ``collate``, ``scored_batches``).

The head roles of ``config["model"]["heads"]`` and their labels are the task's
(``profner_models.tasks``); this module never looks at task or architecture names: the heads
compute their own losses (``models.base.Head``), the backbone its own features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from profner_models.models.base import (
    BackboneContext,
    BackboneOutput,
    HeadContext,
    HeadOutput,
    backbones,
    task_heads,
)
from profner_models.text.features import bucket_batches
from profner_models.text.gazetteer import Gazetteer
from profner_models.text.tokenize import Token, tokenize

PLACEHOLDER = "<empty>"  # the one word of a document with no token (heads need >= 1 word)


class JointModel(nn.Module):
    """The backbone and one head per role; the loss is the weighted sum of the heads' own."""

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
        weights = config.get("training", {}).get("loss_weights") or {}
        self.loss_weights = {role: float(weights.get(role, 1.0)) for role in self.heads}

    def forward(self, features: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor] | None = None
                ) -> tuple[BackboneOutput, dict[str, HeadOutput]]:
        output = self.backbone(features)
        return output, {role: head(output, None if targets is None else targets[role])
                        for role, head in self.heads.items()}

    def loss(self, heads: dict[str, HeadOutput]) -> torch.Tensor:
        """Weighted sum of the heads' losses (CE for 7a, CRF NLL for 7b)."""
        return sum(self.loss_weights[role] * out.loss for role, out in heads.items())


@dataclass
class TrainedModel:
    """A built ``JointModel`` with everything needed to run it on new text. ``resources``
    belong to the task (MEDDOPROF: its NORM index under ``"norm"``)."""

    config: dict
    labels: dict[str, list[str]]
    network: JointModel
    gazetteer: Gazetteer | None = None
    metrics: dict = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())


@dataclass
class Encoded:
    """A document made ready for the model: words with offsets, gazetteer flags, targets."""

    text: str
    tokens: list[Token]
    words: list[str]
    gazetteer: list[int] | None
    targets: dict[str, int | list[int]] = field(default_factory=dict)


def encode_text(text: str, gazetteer: Gazetteer | None) -> Encoded:
    return encode_tokens(text, tokenize(text), gazetteer)


def encode_tokens(text: str, tokens: Sequence[Token], gazetteer: Gazetteer | None) -> Encoded:
    """A text's given tokens (a window of a long document, say) ready for the model."""
    words = [t.text for t in tokens] or [PLACEHOLDER]
    flags = gazetteer.flags(words) if gazetteer is not None else None
    return Encoded(text, list(tokens), words, flags)


def collate(model: JointModel, batch: Sequence[Encoded],
            with_targets: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Features (and targets) tensors for a batch of encoded documents."""
    flags = [e.gazetteer for e in batch] if batch[0].gazetteer is not None else None
    features = model.backbone.featurize([e.words for e in batch], flags)
    if not with_targets:
        return features, {}
    width = max(len(e.words) for e in batch)
    targets = {}
    for role in model.heads:
        values = [e.targets[role] for e in batch]
        if isinstance(values[0], list):  # word targets: padded to the batch's words
            targets[role] = torch.tensor([v + [0] * (width - len(v)) for v in values])
        else:
            targets[role] = torch.tensor(values)
    return features, targets


def scored_batches(network: JointModel, encoded: Sequence[Encoded], batch_size: int,
                   device: torch.device | None = None, with_targets: bool = False) -> Iterator[tuple]:
    """``(indices, items, backbone output, head outputs)`` per length-sorted batch, in eval
    mode under ``torch.inference_mode`` (head losses too, ``with_targets``); the network's
    training mode is restored afterwards."""
    device = device or next(network.parameters()).device
    was_training = network.training
    if was_training:  # toggling walks every submodule: ~0.3 ms per call, 8% of a tweet's time
        network.eval()
    try:
        with torch.inference_mode():
            for batch in bucket_batches([len(e.words) for e in encoded], batch_size, False):
                items = [encoded[i] for i in batch]
                features, targets = collate(network, items, with_targets=with_targets)
                output, heads = network(_on(features, device),
                                        _on(targets, device) if with_targets else None)
                yield batch, items, output, heads
    finally:
        if was_training:
            network.train()


def _on(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``tensors`` on ``device``; one already there is not moved (``.to`` is a dispatched op
    even then: five a tweet)."""
    return {k: v if v.device == device else v.to(device) for k, v in tensors.items()}
