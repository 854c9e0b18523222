"""Training: ``load_task_data`` and ``fit`` (the contract of docs/design.md).

``fit`` is architecture-blind: it builds a ``JointModel`` through the registries, trains it with
AdamW (no weight decay on biases, norms and CRF transitions), linear warm-up then linear decay,
gradient clipping and length-bucketed batches, evaluates on dev after each epoch with the
task's metrics, and keeps the best epoch's weights (``training.select`` metric, or ``last`` for
a refit with a fixed number of epochs). ``training.pretrained_lr`` gives the backbone's
pretrained weights (a transformer encoder) their own learning rate;
``training.interleave_positive`` trains odd epochs on the units holding an entity only (TALP's
MEDDOPROF schedule, which also makes those epochs cheaper) and even epochs on all. It is
task-blind too: labels, targets, training windows, resources such as MEDDOPROF's NORM index and the metrics are the hooks of the
``config["task"]`` ``Task`` (``profner_models.tasks``).
Same config + seed -> same metrics on CPU.

Device and precision (plain torch idioms: the loop is ours and small, so a wrapper such as
``accelerate`` would add a layer without removing code): ``training.device`` ``auto`` (the GPU
Ray gave the trial, else CPU), ``cpu``, ``cuda``, ``cuda:N`` — the network, every batch and the
evaluation run there, and a device asked for but absent fails before any work;
``training.precision`` ``auto`` / ``fp32`` / ``bf16`` / ``fp16`` (autocast; a gradient scaler for
fp16). On a CUDA device a step is worth more work, so by default (``recipe_for``) batches are
``training.cuda_batch_scale`` (4) times larger, learning rates grow by its square root (the
square-root rule for Adam-type optimisers: the update's noise scale stays the same), warm-up
covers as many examples, evaluation runs in batches as many times larger, bf16 autocast is on
where the GPU has it, and batches go to the device from pinned memory without blocking. The
CPU recipe is the config's as written.
Each epoch on a GPU reports ``gpu_memory_mb`` (peak allocated); running out of GPU memory ends
the fit with a message that says so.

Resuming: after each epoch a callback may write ``event.checkpoint(dir)``: the best-so-far model
dir (what prediction and export read) plus ``resume/``, the current weights and everything
needed to go on exactly — optimizer, scheduler, gradient scaler, RNG states, epoch, step,
history, best epoch. ``fit(..., resume_from=dir)`` continues after that epoch, and gives the
same per-epoch metrics on CPU as a fit that was never interrupted.

The room holds ``data`` (splits, held-out documents, novelty), ``build`` (model, device,
recipe, optimiser groups, schedule), ``loop`` (``fit``, ``Trainer``, ``evaluate``) and
``checkpoints`` (save and restore a run).
"""

from profner_models.training.build import (
    Recipe,
    build_model,
    recipe_for,
    resolve_device,
    seed_everything,
)
from profner_models.training.checkpoints import RESUME_DIR, RESUME_STATE, RESUME_WEIGHTS
from profner_models.training.data import held_out_of, load_task_data, word_novelty
from profner_models.training.loop import EpochEnd, FitResult, Trainer, evaluate, fit

__all__ = ["EpochEnd", "FitResult", "RESUME_DIR", "RESUME_STATE", "RESUME_WEIGHTS", "Recipe",
           "Trainer", "build_model", "evaluate", "fit", "held_out_of", "load_task_data",
           "recipe_for", "resolve_device", "seed_everything", "word_novelty"]
