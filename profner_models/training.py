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
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

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

@dataclass
class EpochEnd:
    """What each callback gets after an epoch; returning True stops training."""

    epoch: int
    metrics: dict[str, float]
    model: TrainedModel


@dataclass
class FitResult:
    model: TrainedModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)


def load_task_data(config: dict, data_dir: Path | str | None = None) -> tuple[list[Document], list[Document]]:
    """(train, dev): the corpus's ``valid`` split as dev when it has one, else a seeded
    ``data.dev_fraction`` of train (``data.dev_seed``). ``data_dir`` None: the bundled sample
    of the config's ``task``. ``data.train_on_dev`` (the final refit of a tuned config) trains
    on train+dev; dev is still returned, so its scores are then on seen data."""
    data = data_config(config)
    data_dir = Path(task_of(config).sample_dir() if data_dir is None else data_dir)
    train, _ = load_corpus(data_dir, "train")
    if "valid" in splits_of(data_dir):
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
        callbacks: Sequence[Callable[[EpochEnd], bool | None]] = (), progress: bool = True) -> FitResult:
    """Train on ``train``, select on ``dev``; see the module docstring."""
    config = validate(config)
    cfg = config["training"]
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    seed_everything(int(cfg["seed"]))
    held_out = held_out_of(train, dev)
    model, encoded, positive = build_model(config, train, held_out)
    network = model.network
    dev_gold, _ = apply_span_policy(dev, types=config["data"]["types"], overlap="keep_all")
    task = task_of(config)
    dev_encoded = [task.encode(doc, config, model.labels, model.gazetteer) for doc in dev_gold]
    novelty = word_novelty(network.backbone, dev_encoded)

    optimizer = torch.optim.AdamW(
        _parameter_groups(network, float(cfg["weight_decay"]), cfg["pretrained_lr"]),
        lr=float(cfg["lr"]))
    rng = random.Random(int(cfg["seed"]))
    units = _epoch_units(len(encoded), positive, bool(cfg["interleave_positive"]))
    lengths = [len(e.words) for e in encoded]
    total = sum(len(bucket_batches([lengths[i] for i in units(epoch)], int(cfg["batch_size"]),
                                   False)) for epoch in range(1, int(cfg["epochs"]) + 1))
    if cfg["max_steps"]:
        total = min(total, int(cfg["max_steps"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_warmup_decay(int(cfg["warmup_steps"]), total))

    history: list[dict] = []
    best_state, best_epoch, best_metrics, stale, step = None, 0, {}, 0, 0
    select = cfg["select"]
    shown = Progress(total, enabled=progress)
    shown.report(_dev_line(len(dev_gold), len(held_out), novelty))
    for epoch in range(1, int(cfg["epochs"]) + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        network.train()
        network.backbone.on_epoch_start(epoch)
        chosen = units(epoch)
        batches = bucket_batches([lengths[i] for i in chosen], int(cfg["batch_size"]), True, rng,
                                 bool(cfg["bucketing"]))
        losses = []
        for batch in shown.steps(batches, epoch, int(cfg["epochs"])):
            features, targets = collate(network, [encoded[chosen[i]] for i in batch])
            loss = network.loss(network(features, targets)[1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(network.parameters(), float(cfg["grad_clip"]))
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            shown.set_loss(float(np.mean(losses[-20:])))
            step += 1
            if step >= total:
                break
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = time.process_time() - cpu_started
        metrics = evaluate(model, dev_gold, dev_encoded, int(cfg["eval_batch_size"]))
        metrics.update(train_loss=float(np.mean(losses)) if losses else float("nan"),
                       epoch_seconds=train_seconds, epoch_cpu_seconds=train_cpu_seconds,
                       train_docs=len(chosen), dev_docs=len(dev_gold), **novelty)
        history.append({"epoch": epoch, **metrics})
        if select != "last" and select not in metrics:
            raise KeyError(f"training.select {select!r} is not a metric ({', '.join(metrics)})")
        shown.report(f"epoch {epoch}/{cfg['epochs']}: " + " ".join(
            f"{k}={metrics[k]:.4f}" for k in task.shown_metrics if k in metrics)
            + f" ({train_seconds:.0f}s)")
        if best_state is None or select == "last" or metrics[select] > best_metrics[select]:
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            best_epoch, best_metrics, stale = epoch, metrics, 0
        else:
            stale += 1
        model.metrics = dict(metrics)  # the current epoch's, for callbacks that save the model
        stop = any([bool(cb(EpochEnd(epoch, metrics, model))) for cb in callbacks])
        patience = cfg["early_stopping_patience"]
        if stop or (patience and stale >= int(patience)) or step >= total:
            break
    network.load_state_dict(best_state)
    network.eval()
    model.metrics = dict(best_metrics)
    return FitResult(model, history, best_epoch, best_metrics)


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
