"""Tasks: what a corpus's labels, targets, resources, scores and predictions are.

``config["task"]`` (default ``profner``) picks a ``Task`` from the ``tasks`` registry, as a
model block's ``name`` picks an architecture (``profner_models.registry``)::

    @tasks.register("meddoprof")
    class MeddoprofTask(Task): ...

    task = task_of(config)          # an unknown name: the registry's KeyError naming the known ones
    labels = task.labels(config)

The trainer (``training``), the model (``model.labels_for`` / ``encode_document``), the
predictor and the artifacts only call these hooks, so adding a task is one module that
registers its ``Task`` and is listed in ``TASK_MODULES``: none of them changes.

The task modules are imported on the first lookup, not with this module, so importing
``profner_models`` (or the model, trainer, predictor) loads no task code it does not use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from profner_models.registry import Registry

if TYPE_CHECKING:
    import torch

    from profner_models.artifacts import TrainedModel
    from profner_models.documents import Document
    from profner_models.gazetteer import Gazetteer
    from profner_models.model import Encoded
    from profner_models.predict import Prediction

DEFAULT_TASK = "profner"
TASK_MODULES = ("profner_models.profner", "profner_models.meddoprof")
"""Modules whose import registers a task (``@tasks.register``)."""


class Task:
    """The hooks of one task. Stateless: everything comes in through the arguments."""

    metric: str = ""
    """The dev metric that says how good a model is (``evaluate`` reports it)."""

    def sample_dir(self) -> Path:
        """The bundled sample corpus (``load_task_data`` with no ``data_dir``)."""
        raise NotImplementedError

    def labels(self, config: dict) -> dict[str, list[str]]:
        """The label list of each head role of ``config["model"]["heads"]`` (labels.json)."""
        raise NotImplementedError

    def encode(self, doc: Document, config: dict, labels: dict[str, list[str]],
               gazetteer: Gazetteer | None) -> Encoded:
        """``model.encode_text`` of the document plus the training target of each head role."""
        raise NotImplementedError

    def training_documents(self, docs: list[Document], config: dict) -> list[Document]:
        """The documents the model is trained on, made from the (span-policed) train set."""
        return docs

    def build_resources(self, model: TrainedModel, train: Sequence[Document]) -> None:
        """Set the task's own resources on a fresh model (built from the train set)."""

    def save_resources(self, model: TrainedModel, model_dir: Path) -> list[str]:
        """Write the task's resources into ``model_dir``; the relative paths written."""
        return []

    def load_resources(self, model: TrainedModel, model_dir: Path) -> None:
        """Read back what ``save_resources`` wrote (``artifacts.ModelDirError`` naming the
        file when it cannot)."""

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
    for module in TASK_MODULES:  # after the first call: sys.modules lookups
        importlib.import_module(module)
    return tasks.get(config.get("task") or DEFAULT_TASK)()
