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

import copy
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
from pydantic import Field

from profner_models.config import ConfigError, Schema, check
from profner_models.corpus.augment import AugmentConfig, scorers
from profner_models.documents import Document, Prediction
from profner_models.models import Encoded, TrainedModel, backbones, task_heads
from profner_models.registry import Registry
from profner_models.text.gazetteer import Gazetteer

DEFAULT_TASK = "profner"


class TrainingConfig(Schema):
    """``training``: how ``training.fit`` trains (architecture- and task-blind)."""

    seed: int = 13
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float | None = Field(1.0, ge=0)
    early_stopping_patience: int | None = Field(None, ge=1)
    bucketing: bool = True
    loss_weights: dict[str, float] = Field(default_factory=dict)
    """Per head role; a role not listed weighs 1."""
    select: str | None = None
    """The dev metric that picks the kept epoch, or ``last``; None: the task's metric."""
    average_last: int | None = Field(None, ge=2)
    """With ``select: last``: the kept weights are the mean of the last this-many epochs'
    trainable weights (weight averaging over epochs); None: the last epoch's own."""
    eval_batch_size: int = Field(128, ge=1)
    max_steps: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    pretrained_lr: float | None = Field(None, gt=0)
    interleave_positive: bool = False
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")
    """auto: the GPU Ray assigned to the trial when there is one, else the CPU."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 autocast on a CUDA device that has bf16, else fp32 (the CPU: fp32)."""
    cuda_batch_scale: int = Field(4, ge=1)
    """On a CUDA device: batches this many times ``batch_size``, learning rates times its
    square root, warm-up over as many examples, evaluation batches as many times larger
    (``training.recipe_for``). 1: the CPU's recipe on the GPU."""
    loader_workers: int = Field(0, ge=0)
    """Processes that make the batches while training runs (0: this thread makes them)."""
    vectors_cache: str | None = None
    estimate_seeds: int = Field(1, ge=1)
    """A refit's unseen-text estimate: the mean of this many held-out runs (seeds ``seed``,
    ``seed + 1``, ...) with their spread; one run of a noisy recipe is one draw."""


class ExtraCorpus(Schema):
    """One corpus whose documents (or sentences) are added to the training documents, never
    to dev: e.g. MEDDOPROF's PROFESION and SITUACION_LABORAL mentions for ProfNER."""

    corpus: str
    """A corpus root ``load_corpus`` reads, relative to the data root (or absolute)."""
    split: str = "train"
    unit: Literal["document", "sentence"] = "sentence"
    """sentence: each sentence (after . ! ? or a line break) is a training document."""
    keep: Literal["mentions", "all"] = "mentions"
    """mentions: only the units with a mention of ``data.types`` (other types are dropped)."""


class DataConfig(Schema):
    """``data``: the split and the entity types (tasks extend it)."""

    dev_from: Literal["valid", "train"] = "valid"
    """valid: the corpus's valid split when it has one (else a fraction of train); train: always
    a seeded fraction of train, so a valid split stays out of every selection (a final score)."""
    dev_fraction: float = Field(0.2, gt=0, lt=1)
    dev_seed: int = 13
    train_on_dev: bool = False
    """The refit of a tuned config: train on train + dev (``unseen.train`` still holds dev out
    of a second, held-out run of the same recipe)."""
    check: str | None = "bundled"
    """Labelled text neither the refit nor its held-out run trained on (``unseen``)."""
    scheme: Literal["IO", "BIO", "BILOU"] = "BIO"
    types: list[str] = Field(default_factory=lambda: ["PROFESION", "SITUACION_LABORAL"])
    gazetteer: str | None = None
    augment: AugmentConfig | Literal[False] | None = None
    """LM-ranked substitution of rare-type spans (``corpus.augment``); off by default."""
    extra_train: list[ExtraCorpus] = Field(default_factory=list)
    """Corpora added to the training documents of every run (held-out and refit), never to dev
    (``training.data.extra_documents``)."""


class ModelConfig(Schema):
    """``model``: a backbone and one head per role, each checked by its registry's schema."""

    backbone: dict
    heads: dict[str, dict]


class TaskConfig(Schema):
    """A whole config: a task names its own ``task``, ``data`` and ``model`` schemas."""

    task: str = DEFAULT_TASK
    data: DataConfig = DataConfig()
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()


class Task:
    """The hooks of one task. Stateless: everything comes in through the arguments."""

    metric: str = ""
    """The dev metric that says how good a model is (``evaluate`` reports it)."""
    schema: type[TaskConfig] = TaskConfig
    """The schema of this task's configs."""
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

    def predict_averaged(self, models: Sequence[TrainedModel],
                         weights: Mapping[str, Sequence[float]], texts: Sequence[str],
                         batch_size: int = 64, device: torch.device | None = None,
                         entity_threshold: float = 0.5) -> list[Prediction]:
        """An ensemble's predictions from its members' probabilities averaged with ``weights``
        (per head role, one share per member, summing to 1; 0: the member's output for that
        role is not used; ``profner_models.ensemble``, method ``posterior``); a word leaves
        ``O`` when its entity tags' probability passes ``entity_threshold``."""
        raise NotImplementedError(f"{type(self).__name__}: an ensemble of these models "
                                  "combines by vote (method: vote), not by averaged probabilities")

    def score(self, model: TrainedModel, gold: Sequence[Document],
              predicted: Sequence[Document]) -> dict[str, float]:
        """The task's official scores of ``predicted`` (the model's predictions as documents,
        in the order of ``gold``), with ``metric`` among them: what ``evaluate`` reports
        without running the model, so a set of predictions can be rescored (resampled)."""
        raise NotImplementedError


tasks: Registry[Task] = Registry("task", versioned=False)


def task_of(config: dict) -> Task:
    """The task of ``config["task"]`` (``profner`` when absent)."""
    return tasks.get(config.get("task") or DEFAULT_TASK)()


def data_config(config: dict) -> dict:
    """The ``data`` block alone, checked by the task's schema (what reading a corpus needs)."""
    try:
        task = task_of(config)
    except KeyError as error:
        raise ConfigError(f"task: {error.args[0]}") from None
    return check(task.schema.model_fields["data"].annotation, config.get("data"), "data")


def validate(config: dict) -> dict:
    """``config`` checked whole, as a new plain dict with every default filled in: the task's
    schema, then each registered part's (names versioned), then the head roles against the
    task's labels; ``training.select`` defaults to the task's metric. ``ConfigError`` names
    the key path of the first problem block (all its problems)."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping, got {config!r}")
    try:
        task = task_of(config)
    except KeyError as error:
        raise ConfigError(f"task: {error.args[0]}") from None
    checked = check(task.schema, copy.deepcopy(config))
    augment = checked["data"].get("augment")
    if augment:  # its scorer is a registered part too: a misspelled key fails here, not mid-build
        augment["scorer"] = scorers.check(augment["scorer"], "data.augment.scorer")
    model = checked["model"]
    model["backbone"] = backbones.check(model["backbone"], "model.backbone")
    model["heads"] = {role: task_heads.check(block, f"model.heads.{role}")
                      for role, block in model["heads"].items()}
    try:
        task.labels(checked)
    except ValueError as error:
        raise ConfigError(f"model.heads: {error}") from None
    training = checked["training"]
    if training["select"] is None:
        training["select"] = task.metric
    if training["average_last"] and training["select"] != "last":
        raise ConfigError(f"training.average_last: averages the last epochs' weights, which needs "
                          f"training.select: last (got {training['select']!r})")
    return checked
