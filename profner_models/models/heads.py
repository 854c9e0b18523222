"""Task heads: ``rnn_pooler``, ``pooled_linear`` and ``sentence_linear`` (document labels,
7a), ``crf`` and ``linear_tagger`` (word tags: 7b, MEDDOPROF's types and CLASS).

Config blocks (defaults: the paper's Table 3)::

    classify: {name: rnn_pooler, cell: lstm, hidden: 64, dropout: 0.3}
    classify: {name: pooled_linear, dropout: 0.3}        # max+mean pooling, no recurrence
    classify: {name: sentence_linear, dropout: 0.1}      # needs a backbone sentence vector
    tag: {name: crf, layers: 1, size: 128, activation: relu, dropout: 0.3}
    cls: {name: linear_tagger, layers: 0, size: 128, activation: relu, dropout: 0.3}

Both word heads put the same feed-forward stack (``FeedForward``) under their emissions; the CRF
forbids the scheme's invalid moves, the linear tagger (the cheap second output) decodes by
argmax per word (``tags.decode`` reads a stray ``I-X`` as opening an entity).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from profner_models.config import Schema
from profner_models.kernels import compiled, host
from profner_models.models.base import (
    BackboneOutput,
    DocumentHead,
    HeadContext,
    WordHead,
    task_heads,
)
from profner_models.models.crf import LinearChainCRF
from profner_models.models.dropout import Dropout
from profner_models.models.recurrent import bidirectional, rnn_cell
from profner_models.text.tags import allowed_end_tags, allowed_start_tags, allowed_transitions

FORBIDDEN = -10000.0
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class RNNPoolerConfig(Schema):
    cell: Literal["gru", "lstm"] = "lstm"
    hidden: int = Field(64, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class PooledLinearConfig(Schema):
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class SentenceLinearConfig(Schema):
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class FeedForwardConfig(Schema):
    layers: int = Field(1, ge=0)
    size: int = Field(128, ge=1)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)


class LinearTaggerConfig(FeedForwardConfig):
    layers: int = Field(0, ge=0)
    words: Literal["all", "entities"] = "all"
    """The words its loss reads: every word, or only the words of a gold entity (a MEDDOPROF
    CLASS head, whose spans take their class from their words' class masses: an ``O`` word
    teaches it nothing it is asked)."""


class FeedForward(nn.Sequential):
    """``layers`` x (linear ``size`` -> activation -> dropout) over ``width``-wide inputs."""

    def __init__(self, width: int, block: dict) -> None:
        layers = []
        for _ in range(block["layers"]):
            layers += [nn.Linear(width, block["size"]), ACTIVATIONS[block["activation"]](),
                       Dropout(block["dropout"])]
            width = block["size"]
        super().__init__(*layers)
        self.width = width


@task_heads.register("rnn_pooler.v1", schema=RNNPoolerConfig)
class RNNPooler(DocumentHead):
    """A BiLSTM/BiGRU over the word vectors; its last states (both directions) -> linear."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__()
        self.rnn = rnn_cell(block["cell"])(
            context.word_dim, block["hidden"], batch_first=True, bidirectional=True)
        self.dropout = Dropout(block["dropout"])
        self.linear = nn.Linear(2 * block["hidden"], len(context.labels))

    def scores(self, output: BackboneOutput) -> torch.Tensor:
        _, last = bidirectional(self.rnn, output.words, output.mask.sum(-1))
        return self.linear(self.dropout(last))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        return nn.functional.cross_entropy(scores, targets)


@task_heads.register("pooled_linear.v1", schema=PooledLinearConfig)
class PooledLinear(DocumentHead):
    """Max and mean of the word vectors over real words -> linear: no recurrence, so about a
    millisecond cheaper per tweet on CPU than ``rnn_pooler`` (the latency option)."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__()
        self.dropout = Dropout(block["dropout"])
        self.linear = nn.Linear(2 * context.word_dim, len(context.labels))

    def scores(self, output: BackboneOutput) -> torch.Tensor:
        words = output.words
        if words.shape[0] == 1:  # one text has no padding: the same sums, a third of the ops
            largest, mean = words.amax(dim=1), words.sum(dim=1) / words.shape[1]
        else:
            mask = output.mask.unsqueeze(-1)
            largest = words.masked_fill(~mask, float("-inf")).amax(dim=1)
            mean = (words * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return self.linear(self.dropout(torch.cat([largest, mean], dim=-1)))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        return nn.functional.cross_entropy(scores, targets)


@task_heads.register("sentence_linear.v1", schema=SentenceLinearConfig)
class SentenceLinear(DocumentHead):
    """Linear over the backbone's sentence vector (e.g. a transformer's [CLS])."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__()
        if not context.sentence_dim:
            raise ValueError("head 'sentence_linear' needs a backbone with a sentence vector")
        self.dropout = Dropout(block["dropout"])
        self.linear = nn.Linear(context.sentence_dim, len(context.labels))

    def scores(self, output: BackboneOutput) -> torch.Tensor:
        return self.linear(self.dropout(output.sentence))

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        return nn.functional.cross_entropy(scores, targets)


def transition_masks(labels: list[str], scheme: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bool masks of the *allowed* start tags, transitions ``[from, to]`` and end tags."""
    n = len(labels)
    start, end = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    moves = torch.zeros(n, n, dtype=torch.bool)
    start[allowed_start_tags(labels, scheme)] = True
    end[allowed_end_tags(labels, scheme)] = True
    for i, j in allowed_transitions(labels, scheme):
        moves[i, j] = True
    return start, moves, end


class EmissionTagger(WordHead):
    """Feed-forward layers -> linear emissions per word: what both word heads score with."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__()
        self.feed_forward = FeedForward(context.word_dim, block)
        self.emissions = nn.Linear(self.feed_forward.width, len(context.labels))

    def scores(self, output: BackboneOutput) -> torch.Tensor:
        return self.emissions(self.feed_forward(output.words))


@task_heads.register("crf.v1", schema=FeedForwardConfig)
class CRFTagger(EmissionTagger):
    """Emissions -> CRF whose invalid moves stay forbidden."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__(block, context=context)
        self.crf = LinearChainCRF(len(context.labels))
        start, moves, end = transition_masks(context.labels, context.scheme or "BIO")
        self.register_buffer("forbidden_start", ~start, persistent=False)
        self.register_buffer("forbidden_moves", ~moves, persistent=False)
        self.register_buffer("forbidden_end", ~end, persistent=False)
        self._forbid()
        self._decoding: tuple[np.ndarray, ...] | None = None  # transitions as NumPy, out of training
        self.register_load_state_dict_post_hook(lambda module, keys: module._release())

    def _forbid(self) -> None:
        """Pin forbidden transitions to ``FORBIDDEN`` (weight decay or a step may move them)."""
        with torch.no_grad():
            self.crf.start_transitions.masked_fill_(self.forbidden_start, FORBIDDEN)
            self.crf.transitions.masked_fill_(self.forbidden_moves, FORBIDDEN)
            self.crf.end_transitions.masked_fill_(self.forbidden_end, FORBIDDEN)

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        self._forbid()
        mask = output.mask  # the CRF sums over paths: in float32 even under autocast
        return -self.crf(scores.float(), targets.masked_fill(~mask, 0), mask)

    def marginals(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self._forbid()
        return self.crf.marginals(scores, mask)

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        if self._decoding is None or self.training:
            self._forbid()
            crf = self.crf
            self._decoding = tuple(host(t) for t in (
                crf.start_transitions, crf.transitions, crf.end_transitions))
        return viterbi(host(scores), host(mask.sum(-1)), *self._decoding)

    def train(self, mode: bool = True) -> "CRFTagger":
        self._release()
        return super().train(mode)

    def _release(self) -> None:
        """The weights may change: decode re-reads the transitions."""
        self._decoding = None


@task_heads.register("linear_tagger.v1", schema=LinearTaggerConfig)
class LinearTagger(EmissionTagger):
    """Emissions -> per-word softmax (no CRF): cross-entropy over real words (``words: all``)
    or over the words of gold entities (``words: entities``)."""

    def __init__(self, block: dict, *, context: HeadContext) -> None:
        super().__init__(block, context=context)
        self.outside = context.labels.index("O") if block["words"] == "entities" else None

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        if self.outside is None:
            return nn.functional.cross_entropy(scores[output.mask], targets[output.mask])
        read = output.mask & (targets != self.outside)
        # the mean over the entity words; a batch without one gives 0 (no NaN, no host sync)
        losses = nn.functional.cross_entropy(scores.flatten(0, 1), targets.flatten(), reduction="none")
        return (losses * read.flatten()).sum() / read.sum().clamp(min=1)

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        best = scores.argmax(-1).cpu()
        lengths = mask.sum(-1).cpu()
        return [best[row, : int(n)].tolist() for row, n in enumerate(lengths)]


class MarginalDecoder:
    """Best tag path of averaged per-word tag probabilities (an ensemble's), the scheme's
    invalid moves forbidden; a word leaves ``O`` when its entity tags' probability passes
    ``entity_threshold`` (0.5: the most probable path)."""

    def __init__(self, labels: list[str], scheme: str, entity_threshold: float = 0.5) -> None:
        self.start, self.moves, self.end = (
            np.where(allowed.numpy(), 0.0, FORBIDDEN).astype(np.float32)
            for allowed in transition_masks(labels, scheme))
        self.o_bias = np.zeros(len(labels))  # log odds moved from O to the entity tags
        self.o_bias[labels.index("O")] = np.log(entity_threshold / (1 - entity_threshold))

    def __call__(self, probabilities: np.ndarray) -> list[int]:
        """``[W, len(labels)]`` -> W tag ids."""
        log_p = (np.log(probabilities + 1e-9)[None] + self.o_bias).astype(np.float32)
        (path,) = viterbi(log_p, np.array([log_p.shape[1]]), self.start, self.moves, self.end)
        return path


def viterbi(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray, transitions: np.ndarray,
            end: np.ndarray) -> list[list[int]]:
    """The best tag path of each row of ``emissions`` ``[B, W, T]`` (real length ``lengths``,
    each at least 1) under a linear-chain CRF's ``start`` / ``transitions`` ``[from, to]`` /
    ``end`` scores, all float32.

    ``torchcrf.CRF.decode``'s algorithm, step for step, in C where the install built it
    (``profner_models.kernels``: ~2 us for a tweet), else in NumPy (~0.1 ms; pytorch-crf's loop
    of small torch ops took 0.8 ms of a 3-4 ms tweet). ``tests/test_model_rnn.py`` pins both paths to
    ``CRF.decode``'s. The likelihood is ``models.crf.LinearChainCRF``'s.
    """
    native = compiled()
    if native is None:
        return _viterbi_numpy(emissions, lengths, start, transitions, end)
    lengths = np.ascontiguousarray(lengths, np.int64)
    emissions, start, transitions, end = (np.ascontiguousarray(a, np.float32)
                                          for a in (emissions, start, transitions, end))
    out = np.zeros(emissions.shape[:2], np.int64)
    native.viterbi(emissions, lengths, start, transitions, end, out)
    return [row[:n] for row, n in zip(out.tolist(), lengths.tolist())]


def _viterbi_numpy(emissions: np.ndarray, lengths: np.ndarray, start: np.ndarray,
                   transitions: np.ndarray, end: np.ndarray) -> list[list[int]]:
    batch, width, _ = emissions.shape
    score = start + emissions[:, 0]
    steps = transitions[None, None] + emissions[:, 1:, None, :]  # [B, W-1, from, to], at once
    padded = bool((lengths < width).any())
    history = np.empty((max(width - 1, 0), *score.shape), np.int64)
    for i in range(1, width):
        candidates = score[:, :, None] + steps[:, i - 1]
        history[i - 1] = candidates.argmax(axis=1)
        best = np.maximum.reduce(candidates, axis=1)  # .max() adds a Python wrapper per step
        score = np.where((i < lengths)[:, None], best, score) if padded else best
    score = score + end
    paths = []
    for row in range(batch):
        tag = int(score[row].argmax())
        path = [tag]
        pointers = history[: max(int(lengths[row]) - 1, 0), row].tolist()  # lists index faster
        for step in reversed(pointers):
            tag = step[tag]
            path.append(tag)
        paths.append(path[::-1])
    return paths
