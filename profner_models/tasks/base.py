"""The ``Task`` contract: what a corpus's labels, targets, resources, scores and predictions are.

``config["task"]`` (default ``profner``) picks a ``Task`` from the ``tasks`` registry, as a
model block's ``name`` picks an architecture (``profner_models.registry``)::

    @tasks.register("meddoprof")
    class MeddoprofTask(Task): ...

    task = task_of(config)          # an unknown name: the registry's KeyError naming the known ones
    labels = task.labels(config)

The trainer, the artifacts, the predictor and the unseen-text check only call these hooks (as
spaCy's pipeline only calls a component's), so a task is one module that registers its
``Task`` and is imported by ``tasks/__init__.py``: nothing generic names a task or a head role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from profner_models.documents import Document, Prediction
from profner_models.models import Encoded, TrainedModel
from profner_models.registry import Registry
from profner_models.text.gazetteer import Gazetteer

DEFAULT_TASK = "profner"


class Task:
    """The hooks of one task. Stateless: everything comes in through the arguments."""

    metric: str = ""
    """The dev metric that says how good a model is (``evaluate`` reports it)."""
    shown_metrics: tuple[str, ...] = ()
    """The metrics printed after each epoch."""

    def sample_dir(self) -> Path:
        """The bundled sample corpus (``load_task_data`` with no ``data_dir``)."""
        raise NotImplementedError

    def labels(self, config: dict) -> dict[str, list[str]]:
        """The label list of each head role of ``config["model"]["heads"]`` (labels.json)."""
        raise NotImplementedError

    def encode(self, doc: Document, config: dict, labels: dict[str, list[str]],
               gazetteer: Gazetteer | None) -> Encoded:
        """``models.encode_text`` of the document plus the training target of each head role."""
        raise NotImplementedError

    def training_documents(self, docs: list[Document], config: dict) -> list[Document]:
        """The documents the model is trained on, made from the (span-policed) train set."""
        return docs

    def build_resources(self, model: TrainedModel, train: Sequence[Document]) -> None:
        """Put the task's own resources in ``model.resources`` (built from ``train`` only)."""

    def save_resources(self, model: TrainedModel, model_dir: Path) -> list[str]:
        """Write the task's resources into ``model_dir``; the relative paths written."""
        return []

    def load_resources(self, model: TrainedModel, model_dir: Path) -> None:
        """Read back what ``save_resources`` wrote (``ValueError`` / ``OSError`` when it
        cannot: the loader names the model dir)."""

    def evaluate(self, model: TrainedModel, gold: Sequence[Document], encoded: Sequence[Encoded],
                 batch_size: int = 128) -> dict[str, float]:
        """Dev metrics (the keys of docs/design.md) of ``model`` on ``gold`` (``encoded``: the
        gold documents through ``encode``)."""
        raise NotImplementedError

    def predict(self, model: TrainedModel, texts: Sequence[str], batch_size: int = 64,
                device: torch.device | None = None) -> list[Prediction]:
        """``Predictor.predict``: one ``Prediction`` per text, in order."""
        raise NotImplementedError


tasks: Registry[Task] = Registry("task")


def task_of(config: dict) -> Task:
    """The task of ``config["task"]`` (``profner`` when absent)."""
    return tasks.get(config.get("task") or DEFAULT_TASK)()
