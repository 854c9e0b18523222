"""The training loop: ``fit`` and the ``Trainer`` that holds one fit's state, evaluation after
each epoch, the kept epoch (``training.select``) or the mean of the last epochs' weights
(``training.average_last``), callbacks with an ``EpochEnd`` event."""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from profner_models.documents import Document
from profner_models.models import Encoded, TrainedModel, collate
from profner_models.progress import Progress
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of, validate
from profner_models.text.features import bucket_batches
from profner_models.training.build import (
    build_model,
    linear_warmup_decay,
    parameter_groups,
    recipe_for,
    resolve_device,
    seed_everything,
)
from profner_models.training.checkpoints import restore as restore_checkpoint
from profner_models.training.checkpoints import save as save_checkpoint
from profner_models.training.data import dev_line, held_out_of, word_novelty

LOSS_SHOWN_EVERY = 20  # steps between progress updates of the loss


@dataclass
class EpochEnd:
    """What each callback gets after an epoch; returning True stops training."""

    epoch: int
    metrics: dict[str, float]
    model: TrainedModel
    run: "Trainer | None" = None

    def checkpoint(self, directory: str | Path, extra_meta: dict | None = None) -> Path:
        """Write the best-so-far model dir and ``resume/`` (the module docstring)."""
        return self.run.checkpoint(Path(directory), extra_meta)


@dataclass
class FitResult:
    model: TrainedModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)
    device: str = "cpu"
    recipe: dict = field(default_factory=dict)
    """``Recipe.as_dict()``: the batch size, learning-rate scale, warm-up and precision used."""


def fit(config: dict, train: Sequence[Document], dev: Sequence[Document],
        callbacks: Sequence[Callable[[EpochEnd], bool | None]] = (), progress: bool = True,
        resume_from: str | Path | None = None) -> FitResult:
    """Train on ``train``, select on ``dev``; see the module docstring. A refit that keeps its
    last epoch (``data.train_on_dev``, ``training.select: last``, no early stopping) scores dev
    after that epoch only: scores on text it learns from choose nothing; the other epochs' rows
    hold the training figures alone."""
    config = validate(config)
    cfg = config["training"]
    score_every_epoch = not (config["data"]["train_on_dev"] and cfg["select"] == "last"
                             and not cfg["early_stopping_patience"])
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    device = resolve_device(cfg["device"], cfg["precision"])
    seed_everything(int(cfg["seed"]))
    held_out = held_out_of(train, dev)
    model, encoded, positive = build_model(config, train, held_out)
    model.network.to(device)
    run = Trainer(model, encoded, positive, cfg, device)
    dev_gold, _ = apply_span_policy(dev, types=config["data"]["types"], overlap="keep_all")
    task = task_of(config)
    dev_encoded = [task.encode(doc, config, model.labels, model.gazetteer) for doc in dev_gold]
    novelty = word_novelty(model.network.backbone, dev_encoded)
    if resume_from is not None:
        run.restore(Path(resume_from))
    shown = Progress(run.total, enabled=progress)
    shown.report(dev_line(len(dev_gold), len(held_out), novelty))
    for epoch in range(run.epoch + 1, int(cfg["epochs"]) + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        losses, trained_on = run.train_epoch(epoch, shown)
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = time.process_time() - cpu_started
        final = epoch == int(cfg["epochs"]) or run.step >= run.total
        run.average_weights(epoch, final)
        scored = score_every_epoch or final
        metrics = evaluate(model, dev_gold, dev_encoded, run.recipe.eval_batch_size) if scored else {}
        metrics.update(train_loss=float(np.mean(losses)) if losses else float("nan"),
                       epoch_seconds=train_seconds, epoch_cpu_seconds=train_cpu_seconds,
                       train_docs=trained_on, dev_docs=len(dev_gold), **novelty, **run.memory())
        shown.report(f"epoch {epoch}/{cfg['epochs']}: " + " ".join(
            f"{k}={metrics[k]:.4f}" for k in task.shown_metrics if k in metrics)
            + f" ({train_seconds:.0f}s)")
        run.end_epoch(epoch, metrics)
        model.metrics = dict(metrics)  # the current epoch's, for callbacks that save the model
        stop = any([bool(cb(EpochEnd(epoch, metrics, model, run))) for cb in callbacks])
        patience = cfg["early_stopping_patience"]
        if stop or (patience and run.stale >= int(patience)) or run.step >= run.total:
            break
    model.network.load_state_dict(run.best_state)
    model.network.eval()
    model.metrics = dict(run.best_metrics)
    return FitResult(model, run.history, run.best_epoch, run.best_metrics, str(device),
                     run.recipe.as_dict())


class Trainer:
    """The state of one fit: what an epoch trains with and what a checkpoint holds.
    ``begin_epoch(epoch)`` puts the network in training mode, ``batches(epoch)`` gives an epoch's
    (features, targets) and ``train_step`` trains on one, which is how ``bench/training.py``
    counts a step's ops."""

    def __init__(self, model: TrainedModel, encoded: list[Encoded], positive: list[bool],
                 cfg: dict, device: torch.device) -> None:
        self.model, self.encoded, self.cfg, self.device = model, encoded, cfg, device
        self.recipe = recipe = recipe_for(cfg, device)
        network = model.network
        pretrained_lr = cfg["pretrained_lr"] and float(cfg["pretrained_lr"]) * recipe.lr_scale
        self.optimizer = torch.optim.AdamW(  # fused: one op per update for all tensors
            parameter_groups(network, float(cfg["weight_decay"]), pretrained_lr),
            lr=float(cfg["lr"]) * recipe.lr_scale, fused=True)
        self.batches_rng = random.Random(int(cfg["seed"]))
        self.units = _epoch_units(len(encoded), positive, bool(cfg["interleave_positive"]))
        self.lengths = [len(e.words) for e in encoded]
        total = sum(len(bucket_batches([self.lengths[i] for i in self.units(epoch)],
                                       recipe.batch_size, False))
                    for epoch in range(1, int(cfg["epochs"]) + 1))
        self.total = min(total, int(cfg["max_steps"])) if cfg["max_steps"] else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_warmup_decay(recipe.warmup_steps, self.total))
        self.precision = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=recipe.precision == "fp16")
        self.epoch = self.step = self.best_epoch = self.stale = 0
        self.history: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict = {}
        self.weight_sum: dict[str, torch.Tensor] = {}  # training.average_last: summed weights

    def begin_epoch(self, epoch: int) -> None:
        """Training mode (dropout on) and the backbone's per-epoch state (what it trains)."""
        self.model.network.train()
        self.model.network.backbone.on_epoch_start(epoch)

    def train_epoch(self, epoch: int, shown: Progress) -> tuple[list[float], int]:
        cfg = self.cfg
        self.begin_epoch(epoch)
        losses: list[torch.Tensor] = []
        for features, targets in shown.steps(self.batches(epoch), f"epoch {epoch}/{cfg['epochs']}"):
            losses.append(self.train_step(features, targets))
            if len(losses) % LOSS_SHOWN_EVERY == 1:  # reading a loss waits for the device
                shown.set_loss(float(torch.stack(losses[-LOSS_SHOWN_EVERY:]).mean()))
            self.step += 1
            if self.step >= self.total:
                break
        return torch.stack(losses).tolist() if losses else [], len(self.units(epoch))

    def batches(self, epoch: int) -> Iterable[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
        """(features, targets) per batch of ``epoch``: made here, or by
        ``training.loader_workers`` worker processes (a ``DataLoader``, pinned memory on a GPU)
        while this thread trains. Draws the epoch's shuffle from the run's RNG."""
        network, cfg = self.model.network, self.cfg
        chosen = self.units(epoch)
        batches = bucket_batches([self.lengths[i] for i in chosen], self.recipe.batch_size, True,
                                 self.batches_rng, bool(cfg["bucketing"]))
        items = [[self.encoded[chosen[i]] for i in batch] for batch in batches]
        workers = int(self.cfg["loader_workers"])
        if not workers:
            if self.device.type == "cuda":  # pinned: the copy to the device need not block
                return (_pinned(collate(network, batch)) for batch in items)
            return (collate(network, batch) for batch in items)
        return DataLoader(items, batch_size=None, num_workers=workers,
                          collate_fn=functools.partial(collate, network),
                          pin_memory=self.device.type == "cuda",
                          # its own generator: the workers' seed leaves torch's RNG untouched
                          generator=torch.Generator().manual_seed(int(self.cfg["seed"])))

    def train_step(self, features: dict, targets: dict) -> torch.Tensor:
        """One optimisation step on one batch (moved to the run's device); its loss, left on
        the device (reading it would wait for the step to finish)."""
        network, cfg = self.model.network, self.cfg
        features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
        targets = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
        try:
            with torch.autocast(self.device.type, dtype=self.precision,
                                enabled=self.precision is not None):
                loss = network.loss(network(features, targets)[1])
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        except torch.OutOfMemoryError as error:
            raise RuntimeError(
                f"out of GPU memory on {self.device} at step {self.step} (batch_size "
                f"{cfg['batch_size']}): lower training.batch_size or give the trial a larger "
                f"GPU share ({error})") from error
        if cfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), float(cfg["grad_clip"]),
                                           foreach=True)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def average_weights(self, epoch: int, final: bool) -> None:
        """``training.average_last`` K: the trainable weights after each of the last K epochs
        are summed; after the ``final`` epoch the network holds their mean, which is then what
        dev scores and what is kept (``select: last``)."""
        last = self.cfg["average_last"]
        summed = epoch - (int(self.cfg["epochs"]) - int(last or 0))  # epochs in the sum so far
        if not last or summed < 1:
            return
        with torch.no_grad():
            for name, weight in self.model.network.named_parameters():
                if weight.requires_grad:
                    total = self.weight_sum.get(name)
                    self.weight_sum[name] = weight.detach().clone() if total is None else total.add_(weight)
            if final:
                for name, weight in self.model.network.named_parameters():
                    if name in self.weight_sum:
                        weight.copy_(self.weight_sum[name] / summed)

    def memory(self) -> dict[str, float]:
        if self.device.type != "cuda":
            return {}
        return {"gpu_memory_mb": torch.cuda.max_memory_allocated(self.device) / 2**20}

    def end_epoch(self, epoch: int, metrics: dict) -> None:
        select = self.cfg["select"]
        if select != "last" and select not in metrics:
            raise KeyError(f"training.select {select!r} is not a metric ({', '.join(metrics)})")
        self.epoch = epoch
        self.history.append({"epoch": epoch, **metrics})
        if self.best_state is None or select == "last" or metrics[select] > self.best_metrics[select]:
            self.best_state = {k: v.detach().clone() for k, v in self.model.network.state_dict().items()}
            self.best_epoch, self.best_metrics, self.stale = epoch, metrics, 0
        else:
            self.stale += 1

    def checkpoint(self, directory: Path, extra_meta: dict | None = None) -> Path:
        """The best-so-far model dir, and ``resume/`` with what continues this run exactly."""
        return save_checkpoint(self, Path(directory), extra_meta)

    def restore(self, directory: Path) -> None:
        """Continue after the checkpoint's epoch (``ValueError`` naming what is missing)."""
        restore_checkpoint(self, Path(directory))


def _pinned(batch: tuple[dict, dict]) -> tuple[dict, dict]:
    return tuple({k: v.pin_memory() for k, v in part.items()} for part in batch)


def evaluate(model: TrainedModel, gold: Sequence[Document], encoded: Sequence[Encoded],
             batch_size: int = 128) -> dict[str, float]:
    """The task's dev metrics (ProfNER: loss and official strict 7a/7b scores, plus
    ``f1_7a_head``, the classifier alone; MEDDOPROF: strict NER / CLASS / NORM)."""
    return task_of(model.config).evaluate(model, gold, encoded, batch_size)


def _epoch_units(count: int, positive: Sequence[bool], interleave: bool
                 ) -> Callable[[int], list[int]]:
    """The training units of each epoch (1-based): all, or with ``interleave`` the positive
    ones in odd epochs (all when none is positive)."""
    everything = list(range(count))
    positives = [i for i in everything if positive[i]] or everything

    def units(epoch: int) -> list[int]:
        return positives if interleave and epoch % 2 == 1 else everything

    return units
