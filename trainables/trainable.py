"""The Tune function trainable: one trial = one ``profner_models.training.fit`` call.

The trainable is architecture-blind: the sampled config is merged over the study's base config
and handed to ``fit``, which builds the model through the registries, so adding an architecture
never changes this file. After every epoch it reports the dev metrics with
``tune.report(metrics, checkpoint=...)``; the checkpoint is a saved model dir (the one
``profner predict`` / ``profner serve`` take); the runner keeps each trial's best one (and
Tune its latest, to resume from), so ASHA can stop a trial at any report and the best epoch is
restored from its checkpoint.

Fault-injection hook (documented, used by tests/test_tune_faults.py): a trial config's
top-level ``faults: {fail_at_epoch: N}`` (a block of the trial, not of the model config:
``search_spaces.TRIAL_KEYS``) makes the trial raise :class:`InjectedFault` at the end of epoch
``N``, after that epoch was reported. The block is removed before ``fit`` sees the config.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import tempfile
import time
from typing import Any

import ray
from ray import tune

from profner_models.config import deep_merge
from profner_models.documents import Document
from profner_models.predict import measure_latency
from profner_models.training import fit, load_task_data
from search_spaces import FAULTS_KEY
from trainables.results import PLANNED_KEY

LATENCY_TEXTS = 100  # dev texts a trial predicts one at a time for its latency
TUNE_META = "tune"  # key of the trial's provenance in the checkpoint's meta.json


class InjectedFault(RuntimeError):
    """Raised by a trial whose config sets ``faults.fail_at_epoch`` (fault injection)."""


def train_trial(config: dict[str, Any], *, base_config: dict[str, Any], data_dir: str | None,
                metric: str) -> None:
    """Tune function trainable: fit ``config`` (merged over ``base_config``) on ``data_dir``.

    ``data_dir`` is a corpus path (None: the bundled sample), read inside the worker, so no
    dataset is pickled into the trial config. Bind the keyword arguments with
    ``tune.with_parameters``.
    """
    # Ray logs every checkpoint at INFO ("Checkpoint successfully created"): not for consoles
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    full = deep_merge(base_config, config)
    fail_at = (full.pop(FAULTS_KEY, None) or {}).get("fail_at_epoch")
    train, dev = task_data(full, data_dir)
    reporter = EpochReporter(metric=metric, fail_at=fail_at,
                             epochs=int(full.get("training", {}).get("epochs", 0)),
                             latency_texts=[doc.text for doc in dev[:LATENCY_TEXTS]])
    checkpoint = tune.get_checkpoint()  # set when Tune restores the trial (resume, retry)
    with checkpoint.as_directory() if checkpoint else contextlib.nullcontext() as restored:
        fit(full, train, dev, callbacks=[reporter], progress=False, resume_from=restored)


@functools.lru_cache(maxsize=4)
def _cached_task_data(task: str, data_json: str, data_dir: str | None):
    return load_task_data({"task": task, "data": json.loads(data_json)}, data_dir)


def task_data(config: dict[str, Any], data_dir: str | None) -> tuple[list[Document], list[Document]]:
    """(train, dev) for a trial; cached per worker process (reused actors read the corpus once)."""
    data = json.dumps(config.get("data", {}), sort_keys=True, default=str)
    return _cached_task_data(config.get("task", "profner"), data,
                             None if data_dir is None else str(data_dir))


class EpochReporter:
    """A ``fit`` callback that reports each epoch to Tune with a checkpoint: the trial's best
    model dir so far, plus what resumes the fit exactly after this epoch (``training``)."""

    def __init__(self, metric: str, fail_at: int | None = None, epochs: int = 0,
                 latency_texts: list[str] | None = None) -> None:
        self.metric = metric
        self.epochs = epochs
        self.fail_at = None if fail_at is None else int(fail_at)
        self.latency_texts = latency_texts or []
        self.where = _placement()

    def __call__(self, event) -> bool:
        metrics = {k: float(v) for k, v in event.metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics["epoch"] = event.epoch
        metrics[PLANNED_KEY] = self.epochs
        if self.metric not in metrics:
            raise KeyError(f"metric {self.metric!r} is not reported by fit ({', '.join(metrics)})")
        if event.epoch == event.run.best_epoch and self.latency_texts:
            # the frontier's latency, at each new best epoch (the checkpoint keeps that one)
            started = time.perf_counter()
            metrics.update(measure_latency(event.model, self.latency_texts))
            metrics["latency_probe_s"] = time.perf_counter() - started
        where = {**self.where, "device": str(event.run.device)}
        with tempfile.TemporaryDirectory(prefix="profner-ckpt-") as tmp:
            event.checkpoint(tmp, extra_meta={TUNE_META: {"epoch": event.epoch,
                                                          "trial_id": _trial_id(), **where}})
            tune.report({**metrics, **where}, checkpoint=tune.Checkpoint.from_directory(tmp))
        if self.fail_at is not None and event.epoch >= self.fail_at:
            raise InjectedFault(f"faults.fail_at_epoch={self.fail_at}: injected failure "
                                f"after epoch {event.epoch}")
        return False


def _trial_id() -> str:
    try:
        return tune.get_context().get_trial_id()
    except Exception:  # outside a Tune session (a plain call in a test or the bench)
        return ""


def _placement() -> dict[str, str | int]:
    """Where this trial runs: Ray node id, host and pid (string tags in MLflow)."""
    try:
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:
        node_id = ""
    return {"node_id": node_id, "host": socket.gethostname(), "worker_pid": os.getpid()}
