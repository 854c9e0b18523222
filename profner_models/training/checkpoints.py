"""A fit's checkpoints: the best-so-far model dir plus ``resume/``, everything needed to go on
exactly (weights, optimizer, scheduler, gradient scaler, RNG states, epoch, step, history, best
epoch). ``restore`` continues after the checkpoint's epoch and gives the same per-epoch metrics
on CPU as a fit that was never interrupted. Weights are safetensors; the state is read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from profner_models import artifacts

if TYPE_CHECKING:  # the loop imports this module
    from profner_models.training.loop import Trainer

RESUME_DIR, RESUME_WEIGHTS, RESUME_STATE = "resume", "model.safetensors", "state.pt"


def save(trainer: Trainer, directory: Path, extra_meta: dict | None = None) -> Path:
    """The best-so-far model dir, and ``resume/`` with what continues this run exactly."""
    model = trainer.model
    live_metrics = model.metrics
    model.metrics = dict(trainer.best_metrics)
    artifacts.save(model, directory, weights=trainer.best_state, extra_meta={
        "best_epoch": trainer.best_epoch, "device": str(trainer.device),
        "recipe": trainer.recipe.as_dict(), **(extra_meta or {})})
    model.metrics = live_metrics
    resume = directory / RESUME_DIR
    resume.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()},
              str(resume / RESUME_WEIGHTS))
    torch.save(_state(trainer), resume / RESUME_STATE)
    return directory


def _state(trainer: Trainer) -> dict:
    numpy_state = np.random.get_state()
    return {
        "epoch": trainer.epoch, "step": trainer.step, "stale": trainer.stale,
        "best_epoch": trainer.best_epoch, "best_metrics": trainer.best_metrics,
        "history": trainer.history,
        "weight_sum": trainer.weight_sum,
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "batches": _plain(trainer.batches_rng.getstate()),
                "cuda": torch.cuda.get_rng_state_all() if trainer.device.type == "cuda" else [],
                "python": _plain(random.getstate()),
                "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]},
    }


def restore(trainer: Trainer, directory: Path) -> None:
    """Continue after the checkpoint's epoch (``ValueError`` naming what is missing)."""
    resume = directory / RESUME_DIR
    for name in (RESUME_WEIGHTS, RESUME_STATE):
        if not (resume / name).is_file():
            raise ValueError(f"{resume / name}: missing: not a resumable checkpoint")
    network = trainer.model.network
    network.load_state_dict(load_file(str(resume / RESUME_WEIGHTS), device=str(trainer.device)))
    state = torch.load(resume / RESUME_STATE, weights_only=True, map_location=trainer.device)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.epoch, trainer.step, trainer.stale = state["epoch"], state["step"], state["stale"]
    trainer.best_epoch, trainer.best_metrics = state["best_epoch"], state["best_metrics"]
    trainer.history = state["history"]
    trainer.weight_sum = state.get("weight_sum", {})
    best = load_file(str(directory / artifacts.WEIGHTS), device=str(trainer.device))
    trainer.best_state = best if trainer.best_epoch != trainer.epoch else {
        k: v.detach().clone() for k, v in network.state_dict().items()}
    rng = state["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"]:
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    trainer.batches_rng.setstate(_tuples(rng["batches"]))
    random.setstate(_tuples(rng["python"]))
    numpy = rng["numpy"]
    np.random.set_state((numpy[0], np.array(numpy[1], dtype=np.uint32), *numpy[2:]))


def _plain(value):
    """Tuples -> lists, so ``torch.load(weights_only=True)`` reads the state back."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
