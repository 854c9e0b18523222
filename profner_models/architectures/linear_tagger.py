"""Word head ``linear_tagger``: feed-forward layers -> per-word softmax (no CRF).

The cheap alternative to ``crf`` for a second token-level output (MEDDOPROF CLASS)::

    cls: {name: linear_tagger, layers: 0, size: 128, activation: relu, dropout: 0.3}

Loss: cross-entropy over real words; decode: argmax per word (the scheme's invalid moves are not
forbidden; ``tags.decode`` reads a stray ``I-X`` as opening an entity).
"""

from __future__ import annotations

import torch
from torch import nn

from profner_models.architectures.base import BackboneOutput, HeadContext, WordHead, task_heads
from profner_models.architectures.heads import ACTIVATIONS


class LinearTagger(WordHead):
    def __init__(self, block: dict, context: HeadContext) -> None:
        super().__init__()
        layers, width = [], context.word_dim
        size = int(block.get("size", 128))
        activation = ACTIVATIONS[block.get("activation", "relu")]
        dropout = float(block.get("dropout", 0.3))
        for _ in range(int(block.get("layers", 0))):
            layers += [nn.Linear(width, size), activation(), nn.Dropout(dropout)]
            width = size
        self.feed_forward = nn.Sequential(*layers)
        self.emissions = nn.Linear(width, len(context.labels))

    def forward(self, output: BackboneOutput) -> torch.Tensor:
        return self.emissions(self.feed_forward(output.words))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(scores[mask], targets[mask])

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        best = scores.argmax(-1).cpu()
        lengths = mask.sum(-1).cpu()
        return [best[row, : int(n)].tolist() for row, n in enumerate(lengths)]


@task_heads.register("linear_tagger")
def build_linear_tagger(block: dict, *, context: HeadContext) -> LinearTagger:
    return LinearTagger(block, context)
