"""What a backbone and a task head must provide, and the registries that build them.

A model is one backbone plus task heads, each chosen by the ``name`` of its config block::

    model:
      backbone: {name: rnn, ...}            # -> backbones.build(block, context=BackboneContext)
      heads:
        classify: {name: rnn_pooler, ...}   # -> task_heads.build(block, context=HeadContext)
        tag: {name: crf, ...}

``profner_models.models.joint.JointModel`` assembles them; the trainer, the predictor and the
artifacts only talk to these interfaces, so a new architecture is one module that registers
its factory (and is imported in ``models/__init__.py``). Heads compute their own loss
(``Head.forward`` returns scores and, given targets, the loss), so nothing above them asks what
kind of head it holds.

Units: a *word* is one token of ``profner_models.text.tokenize.tokenize`` (its char offsets are kept
outside the model). Entities are tagged per word, so a backbone must return exactly one vector
per word, whatever sub-word units it uses inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from profner_models.registry import Registry
from profner_models.vectors import NOTHING, HeldOut

__all__ = [
    "Backbone",
    "BackboneContext",
    "BackboneOutput",
    "DocumentHead",
    "Head",
    "HeadContext",
    "HeadOutput",
    "WordHead",
    "backbones",
    "task_heads",
    "SEEN",
    "VECTORS_ONLY",
    "UNKNOWN",
]

SEEN, VECTORS_ONLY, UNKNOWN = 2, 1, 0
"""``Backbone.word_status``: a word of the training documents, one known only from pretrained
vectors, one outside the vocabulary."""


@dataclass
class BackboneContext:
    """Everything a backbone factory gets besides its config block.

    Two cases, told apart by ``model_dir``:

    - *fresh* (``model_dir is None``, training): build vocabularies from ``train_words`` and load
      any pretrained resource (word vectors, a transformer checkpoint) named in the block.
    - *restore* (``model_dir`` set, ``artifacts.load``): read back the files your
      ``save_resources`` wrote into that directory and build the same-shaped module. Do NOT load
      pretrained weights or rebuild vocabularies from data: the trained weights are loaded from
      ``model.safetensors`` right after the factory returns (``load_state_dict(strict=True)``),
      so the parameter names and shapes must match the saved ones exactly.
    """

    train_words: Sequence[Sequence[str]] = ()
    """Words of the training documents (fresh case only; empty when restoring)."""
    model_dir: Path | None = None
    """Set when restoring a saved model: read your vocab/tokenizer files from here."""
    gazetteer_size: int = 0
    """Number of gazetteer flag ids (0 = no gazetteer features; else ids are 0..size-1, 0 = out)."""
    cache_dir: Path | None = None
    """Where derived resources (e.g. gensim-trained vectors) may be cached between runs."""
    held_out: HeldOut = NOTHING
    """Documents held out for scoring (fresh case): no resource may be built from them."""
    keep_states: bool = False
    """Restore: keep a frozen encoder's states where a fit keeps them (its ``memo_dir``), as a
    training machine does when it scores a saved model on text its fits already encoded."""


@dataclass
class BackboneOutput:
    """What a backbone returns for a batch of B documents padded to W words."""

    words: torch.Tensor
    """Float ``[B, W, word_dim]``: one vector per word, in the order of the input words."""
    mask: torch.Tensor
    """Bool ``[B, W]``: True for real words, False for padding; ``mask[:, 0]`` is all True."""
    sentence: torch.Tensor | None = None
    """Float ``[B, sentence_dim]`` document vector (e.g. a transformer's [CLS]) or None."""


class Backbone(nn.Module):
    """Turns documents given as words into one vector per word (and optionally per document).

    A subclass must set ``word_dim`` (and ``sentence_dim``, 0 when ``forward`` gives no
    ``sentence``) in ``__init__`` and implement the three methods below. It is built by a factory
    registered in ``backbones``: ``factory(block: dict, *, context: BackboneContext) -> Backbone``.

    Register with ``@backbones.register("name")`` in a new module of this package
    (``architectures/__init__.py`` imports every module of the package).
    """

    word_dim: int
    sentence_dim: int = 0

    def featurize(
        self, words: Sequence[Sequence[str]], gazetteer: Sequence[Sequence[int]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Make the input tensors for a batch (CPU, no grad, deterministic).

        ``words[b]`` are the words of document b (never empty: the caller puts a placeholder
        word in empty documents). ``gazetteer[b][i]`` is the gazetteer flag id of word i
        (``context.gazetteer_size`` > 0), or ``gazetteer`` is None. Pad to the longest
        document in the batch and include whatever ``forward`` needs (ids, sub-word maps, the
        word mask...). The caller moves every tensor to the model's device, may slice nothing,
        and passes the dict unchanged to ``forward``.
        """
        raise NotImplementedError

    def forward(self, features: dict[str, torch.Tensor]) -> BackboneOutput:  # noqa: D102
        raise NotImplementedError

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Weights loaded from a pretrained model, which the trainer gives their own learning
        rate (``training.pretrained_lr``) when set. Default: none."""
        return []

    def recorded_config(self) -> dict:
        """What the data decided at build that the restore case must know (sizes: a vectors
        file's dimension, the vocabulary rows of training words): merged into the backbone
        block of the saved ``config.json``, never written into the config it was built from.
        Default: nothing."""
        return {}

    def save_resources(self, model_dir: Path) -> list[str]:
        """Write the files the restore case needs (vocabularies, tokenizer, HF config...).

        Write under ``model_dir`` only (use ``vocab/`` for vocabularies and ``tokenizer/`` for a
        tokenizer) and return the written paths relative to ``model_dir``: the artifact loader
        checks that each one exists before calling the factory. Weights go in
        ``model.safetensors`` through ``state_dict``, never here.
        """
        raise NotImplementedError

    def word_status(self, words: Sequence[str]) -> list[int] | None:
        """``SEEN`` / ``VECTORS_ONLY`` / ``UNKNOWN`` per word, or None for a backbone without a
        word vocabulary (sub-word pieces: no word is unknown). Default: None."""
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Called by ``fit`` at the start of each training epoch (1-based), after
        ``network.train()``: a backbone may change what it trains (the transformer unfreezes its
        encoder after ``freeze_epochs``). Default: nothing."""


@dataclass
class HeadContext:
    """Everything a head factory gets besides its config block."""

    word_dim: int
    """Size of ``BackboneOutput.words`` vectors."""
    sentence_dim: int
    """Size of ``BackboneOutput.sentence`` (0 when the backbone gives none)."""
    labels: list[str]
    """Output labels: document classes (e.g. ["0", "1"]) or the tag set (e.g. ["O", "B-X", ...])."""
    scheme: str | None = None
    """Tagging scheme (IO | BIO | BILOU) for word heads, so they can forbid invalid moves."""


@dataclass
class HeadOutput:
    """What a head returns: its scores and, when targets were given, its mean batch loss."""

    scores: torch.Tensor
    loss: torch.Tensor | None = None


class Head(nn.Module):
    """A task head: ``forward(output, targets=None)`` -> ``HeadOutput``. Subclasses implement
    ``scores`` and ``loss``. Registered in ``task_heads``: ``factory(block, *, context)``."""

    def forward(self, output: BackboneOutput, targets: torch.Tensor | None = None) -> HeadOutput:
        scores = self.scores(output)
        return HeadOutput(scores, None if targets is None else self.loss(scores, targets, output))

    def scores(self, output: BackboneOutput) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, output: BackboneOutput) -> torch.Tensor:
        """Mean loss over the batch."""
        raise NotImplementedError


class DocumentHead(Head):
    """One label per document (7a): scores ``[B, len(labels)]`` (logits), ``targets`` long
    ``[B]`` label ids."""

    def probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """``[B, len(labels)]`` probabilities."""
        return scores.softmax(-1)


class WordHead(Head):
    """One label per word (7b tags): scores ``[B, W, len(labels)]`` (emissions), ``targets``
    long ``[B, W]`` (padding positions: any id; ``output.mask`` says which are real)."""

    def decode(self, scores: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best label ids per document, each list as long as that document's real words."""
        raise NotImplementedError

    def marginals(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, W, len(labels)]`` label probabilities per word (0 at padding): what an
        ensemble averages. Default: a softmax per word."""
        return scores.float().softmax(-1) * mask.unsqueeze(-1)


backbones: Registry[Backbone] = Registry("backbone")
task_heads: Registry[nn.Module] = Registry("head")
