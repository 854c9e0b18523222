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
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from profner_models import artifacts
from profner_models.config import ConfigError
from profner_models.corpus import load_corpus, splits_of
from profner_models.corpus.augment import augment_documents
from profner_models.documents import Document
from profner_models.models import (
    SEEN,
    UNKNOWN,
    Backbone,
    BackboneContext,
    Encoded,
    JointModel,
    TrainedModel,
    collate,
)
from profner_models.progress import Progress
from profner_models.spans import apply_span_policy
from profner_models.tasks import data_config, task_of, validate
from profner_models.text.features import bucket_batches
from profner_models.text.gazetteer import SIZE as GAZETTEER_SIZE
from profner_models.text.gazetteer import gazetteer_from_config
from profner_models.vectors import NOTHING, HeldOut

log = logging.getLogger(__name__)

RESUME_DIR, RESUME_WEIGHTS, RESUME_STATE = "resume", "model.safetensors", "state.pt"
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


def load_task_data(config: dict, data_dir: Path | str | None = None) -> tuple[list[Document], list[Document]]:
    """(train, dev): the corpus's ``valid`` split as dev when it has one (and ``data.dev_from``
    is ``valid``), else a seeded ``data.dev_fraction`` of train (``data.dev_seed``). ``data_dir``
    None: the bundled sample
    of the config's ``task``. ``data.train_on_dev`` (the final refit of a tuned config) trains
    on train+dev; dev is still returned, so its scores are then on seen data."""
    data = data_config(config)
    data_dir = Path(task_of(config).sample_dir() if data_dir is None else data_dir)
    train, _ = load_corpus(data_dir, "train")
    if data["dev_from"] == "valid" and "valid" in splits_of(data_dir):
        dev, _ = load_corpus(data_dir, "valid")
    else:
        train, dev = _split_dev(train, float(data["dev_fraction"]), int(data["dev_seed"]))
    return ([*train, *dev] if data["train_on_dev"] else train), dev


def _split_dev(train: list[Document], fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(train) * fraction))
    dev_ids = set(order[:n_dev])
    return ([d for i, d in enumerate(train) if i not in dev_ids],
            [d for i, d in enumerate(train) if i in dev_ids])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def held_out_of(train: Sequence[Document], dev: Sequence[Document]) -> HeldOut:
    """The dev documents that are not training documents (by id and by text): what no
    vocabulary, vectors, PCA or index of the model may be built from."""
    ids, texts = {d.id for d in train}, {d.text for d in train}
    return HeldOut.of(d for d in dev if d.id not in ids and d.text not in texts)


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


def fit(config: dict, train: Sequence[Document], dev: Sequence[Document],
        callbacks: Sequence[Callable[[EpochEnd], bool | None]] = (), progress: bool = True,
        resume_from: str | Path | None = None) -> FitResult:
    """Train on ``train``, select on ``dev``; see the module docstring."""
    config = validate(config)
    cfg = config["training"]
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
    shown.report(_dev_line(len(dev_gold), len(held_out), novelty))
    for epoch in range(run.epoch + 1, int(cfg["epochs"]) + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        losses, trained_on = run.train_epoch(epoch, shown)
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = time.process_time() - cpu_started
        metrics = evaluate(model, dev_gold, dev_encoded, run.recipe.eval_batch_size)
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


class Trainer:
    """The state of one fit: what an epoch trains with and what a checkpoint holds.
    ``batches(epoch)`` gives an epoch's (features, targets) and ``train_step`` trains on one, which
    is how ``bench/training.py`` counts a step's ops."""

    def __init__(self, model: TrainedModel, encoded: list[Encoded], positive: list[bool],
                 cfg: dict, device: torch.device) -> None:
        self.model, self.encoded, self.cfg, self.device = model, encoded, cfg, device
        self.recipe = recipe = recipe_for(cfg, device)
        network = model.network
        pretrained_lr = cfg["pretrained_lr"] and float(cfg["pretrained_lr"]) * recipe.lr_scale
        self.optimizer = torch.optim.AdamW(  # fused: one op per update for all tensors
            _parameter_groups(network, float(cfg["weight_decay"]), pretrained_lr),
            lr=float(cfg["lr"]) * recipe.lr_scale, fused=True)
        self.batches_rng = random.Random(int(cfg["seed"]))
        self.units = _epoch_units(len(encoded), positive, bool(cfg["interleave_positive"]))
        self.lengths = [len(e.words) for e in encoded]
        total = sum(len(bucket_batches([self.lengths[i] for i in self.units(epoch)],
                                       recipe.batch_size, False))
                    for epoch in range(1, int(cfg["epochs"]) + 1))
        self.total = min(total, int(cfg["max_steps"])) if cfg["max_steps"] else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _linear_warmup_decay(recipe.warmup_steps, self.total))
        self.precision = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[recipe.precision]
        self.scaler = torch.amp.GradScaler(device.type, enabled=recipe.precision == "fp16")
        self.epoch = self.step = self.best_epoch = self.stale = 0
        self.history: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict = {}

    def train_epoch(self, epoch: int, shown: Progress) -> tuple[list[float], int]:
        network, cfg = self.model.network, self.cfg
        network.train()
        network.backbone.on_epoch_start(epoch)
        losses: list[torch.Tensor] = []
        for features, targets in shown.steps(self.batches(epoch), epoch, int(cfg["epochs"])):
            losses.append(self.train_step(features, targets))
            if len(losses) % LOSS_SHOWN_EVERY == 1:  # reading a loss waits for the device
                shown.set_loss(float(torch.stack(losses[-LOSS_SHOWN_EVERY:]).mean()))
            self.step += 1
            if self.step >= self.total:
                break
        return torch.stack(losses).tolist() if losses else [], len(self.units(epoch))

    def batches(self, epoch: int):
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

    # ---- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, directory: Path, extra_meta: dict | None = None) -> Path:
        """The best-so-far model dir, and ``resume/`` with what continues this run exactly."""
        model = self.model
        live_metrics = model.metrics
        model.metrics = dict(self.best_metrics)
        artifacts.save(model, directory, weights=self.best_state, extra_meta={
            "best_epoch": self.best_epoch, "device": str(self.device),
            "recipe": self.recipe.as_dict(), **(extra_meta or {})})
        model.metrics = live_metrics
        resume = directory / RESUME_DIR
        resume.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()},
                  str(resume / RESUME_WEIGHTS))
        torch.save(self._state(), resume / RESUME_STATE)
        return directory

    def _state(self) -> dict:
        numpy_state = np.random.get_state()
        return {
            "epoch": self.epoch, "step": self.step, "stale": self.stale,
            "best_epoch": self.best_epoch, "best_metrics": self.best_metrics,
            "history": self.history,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "batches": _plain(self.batches_rng.getstate()),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                    "python": _plain(random.getstate()),
                    "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]},
        }

    def restore(self, directory: Path) -> None:
        """Continue after the checkpoint's epoch (``ValueError`` naming what is missing)."""
        resume = directory / RESUME_DIR
        for name in (RESUME_WEIGHTS, RESUME_STATE):
            if not (resume / name).is_file():
                raise ValueError(f"{resume / name}: missing: not a resumable checkpoint")
        network = self.model.network
        network.load_state_dict(load_file(str(resume / RESUME_WEIGHTS), device=str(self.device)))
        state = torch.load(resume / RESUME_STATE, weights_only=True, map_location=self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.stale = state["epoch"], state["step"], state["stale"]
        self.best_epoch, self.best_metrics = state["best_epoch"], state["best_metrics"]
        self.history = state["history"]
        best = load_file(str(directory / artifacts.WEIGHTS), device=str(self.device))
        self.best_state = best if self.best_epoch != self.epoch else {
            k: v.detach().clone() for k, v in network.state_dict().items()}
        rng = state["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"]:
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        self.batches_rng.setstate(_tuples(rng["batches"]))
        random.setstate(_tuples(rng["python"]))
        numpy = rng["numpy"]
        np.random.set_state((numpy[0], np.array(numpy[1], dtype=np.uint32), *numpy[2:]))


def _pinned(batch: tuple[dict, dict]) -> tuple[dict, dict]:
    return tuple({k: v.pin_memory() for k, v in part.items()} for part in batch)


def _plain(value):
    """Tuples -> lists, so ``torch.load(weights_only=True)`` reads the state back."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def evaluate(model: TrainedModel, gold: Sequence[Document], encoded: Sequence[Encoded],
             batch_size: int = 128) -> dict[str, float]:
    """The task's dev metrics (ProfNER: loss and official strict 7a/7b scores, plus
    ``f1_7a_head``, the classifier alone; MEDDOPROF: strict NER / CLASS / NORM)."""
    return task_of(model.config).evaluate(model, gold, encoded, batch_size)


def word_novelty(backbone: Backbone, encoded: Sequence[Encoded]) -> dict[str, float]:
    """How new the words of ``encoded`` are to the model: ``dev_unknown_rate``, the share
    outside its vocabulary (they take the unknown-word path), and ``dev_unseen_rate``, the share
    not in its training documents (known at most from pretrained vectors). Empty for a
    backbone without a word vocabulary."""
    statuses = [s for e in encoded if e.tokens for s in (backbone.word_status(e.words) or [])]
    if not statuses:
        return {}
    return {"dev_unknown_rate": sum(s == UNKNOWN for s in statuses) / len(statuses),
            "dev_unseen_rate": sum(s != SEEN for s in statuses) / len(statuses)}


def _dev_line(documents: int, held_out: int, novelty: dict[str, float]) -> str:
    if held_out:
        what = f"dev: {documents} documents held out from every learned resource"
    else:
        what = f"dev: {documents} documents, all trained on: its scores are on seen text"
    if novelty:
        what += (f"; {novelty['dev_unknown_rate']:.1%} of its words outside the vocabulary, "
                 f"{novelty['dev_unseen_rate']:.1%} not in the training documents")
    return what


def _epoch_units(count: int, positive: Sequence[bool], interleave: bool
                 ) -> Callable[[int], list[int]]:
    """The training units of each epoch (1-based): all, or with ``interleave`` the positive
    ones in odd epochs (all when none is positive)."""
    everything = list(range(count))
    positives = [i for i in everything if positive[i]] or everything

    def units(epoch: int) -> list[int]:
        return positives if interleave and epoch % 2 == 1 else everything

    return units


def _parameter_groups(network: torch.nn.Module, weight_decay: float,
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


def _linear_warmup_decay(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
