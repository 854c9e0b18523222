"""What a fit builds before its first step: the seeded model with its resources, the device,
the device's recipe (batch size, learning-rate scale, warm-up, precision), the optimiser's
parameter groups and the learning-rate schedule."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from profner_models.config import ConfigError
from profner_models.corpus.augment import augment_documents
from profner_models.documents import Document
from profner_models.models import BackboneContext, Encoded, JointModel, TrainedModel
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of
from profner_models.text.gazetteer import SIZE as GAZETTEER_SIZE
from profner_models.text.gazetteer import gazetteer_from_config
from profner_models.vectors import NOTHING, HeldOut

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: dict, train: Sequence[Document], held_out: HeldOut = NOTHING
                ) -> tuple[TrainedModel, list[Encoded], list[bool]]:
    """A fresh ``TrainedModel`` for ``config`` (vocab from ``train``, nothing from
    ``held_out``), the encoded training units and whether each holds an entity."""
    task = task_of(config)
    labels = task.labels(config)
    gazetteer = gazetteer_from_config(config["data"]["gazetteer"])
    docs, counts = apply_span_policy(train, types=config["data"]["types"], overlap="keep_outer")
    log.info("span policy on train: %s", counts)
    docs = augment_documents(docs, config)  # off unless data.augment (train only: no dev leak)
    docs = task.training_documents(docs, config)  # MEDDOPROF: long cases -> windows
    encoded = [task.encode(doc, config, labels, gazetteer) for doc in docs]
    context = BackboneContext(
        train_words=[e.words for e in encoded],
        gazetteer_size=GAZETTEER_SIZE if gazetteer is not None else 0,
        held_out=held_out,
        cache_dir=Path(config["training"]["vectors_cache"]).expanduser()
        if config["training"].get("vectors_cache") else None,
    )
    network = JointModel(config, labels, context)
    model = TrainedModel(config, labels, network, gazetteer)
    task.build_resources(model, train)
    return model, encoded, [bool(doc.spans) for doc in docs]


def resolve_device(spec: str, precision: str = "fp32") -> torch.device:
    """``training.device``: ``auto`` is the GPU Ray assigned (CUDA_VISIBLE_DEVICES) when torch
    sees one, else the CPU; a device asked for that this machine lacks is a ``ConfigError``
    before any work starts, and so is a precision the device cannot run."""
    if spec == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(spec)
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (device.index or 0) >= count:
                raise ConfigError(f"training.device: {spec!r} asked for, but torch sees "
                                  f"{count} CUDA device(s) here (use auto or cpu)")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("training.precision: fp16 needs a CUDA device (bf16 runs on CPU)")
    return device


@dataclass(frozen=True)
class Recipe:
    """What the steps of a fit run with on its device (module docstring)."""

    batch_size: int
    eval_batch_size: int
    lr_scale: float
    warmup_steps: int
    precision: str

    def as_dict(self) -> dict:
        return {"batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
                "lr_scale": self.lr_scale, "warmup_steps": self.warmup_steps,
                "precision": self.precision}


def recipe_for(cfg: dict, device: torch.device) -> Recipe:
    """The config's recipe on the CPU; scaled on a CUDA device (module docstring)."""
    scale = int(cfg["cuda_batch_scale"]) if device.type == "cuda" else 1
    precision = cfg["precision"]
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return Recipe(int(cfg["batch_size"]) * scale, int(cfg["eval_batch_size"]) * scale,
                  math.sqrt(scale), math.ceil(int(cfg["warmup_steps"]) / scale), precision)


def parameter_groups(network: torch.nn.Module, weight_decay: float,
                      pretrained_lr: float | None = None) -> list[dict]:
    """AdamW groups: no decay on biases, norms and CRF transitions; with ``pretrained_lr``
    the backbone's pretrained weights get that learning rate."""
    pretrained = {id(p) for p in network.backbone.pretrained_parameters()} if pretrained_lr else set()
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in network.named_parameters():
        if param.requires_grad:
            decays = not (param.ndim < 2 or ".crf." in name)
            groups.setdefault((decays, id(param) in pretrained), []).append(param)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             **({"lr": float(pretrained_lr)} if is_pretrained else {})}
            for (decays, is_pretrained), params in sorted(groups.items())]


def linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
