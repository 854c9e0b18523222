"""``Predictor``: a trained model applied to raw texts, batched, under ``torch.inference_mode``.

``Predictor.predict`` is the ``predict`` hook of the model's task (``profner_models.tasks``).

Threads: one tweet at a time is fastest with ``torch.set_num_threads(1)``; on a busy 2-core
machine 2 intra-op threads spin against other processes (bench/inference.py, load average 5-8:
p50 1190 ms with 2 threads, 29 ms with 1).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Sequence

import torch

from profner_models import ensemble
from profner_models.artifacts import load
from profner_models.documents import Prediction
from profner_models.models import TrainedModel
from profner_models.progress import Progress
from profner_models.tasks import task_of


def load_model(path: str | Path) -> TrainedModel | ensemble.Ensemble:
    """A model dir or an ensemble dir (``ModelDirError`` naming the file at fault)."""
    return ensemble.load(path) if ensemble.is_ensemble_dir(path) else load(path)


class Predictor:
    """Load once (a model dir, an ensemble dir, a ``TrainedModel`` or an ``Ensemble``), then
    ``predict`` lists of texts."""

    def __init__(self, model: str | Path | TrainedModel | ensemble.Ensemble, batch_size: int = 64,
                 device: str | torch.device = "cpu") -> None:
        self.model = model if isinstance(model, (TrainedModel, ensemble.Ensemble)) else load_model(model)
        self.batch_size = batch_size
        self.device = torch.device(device)
        for member in self.model.members if isinstance(self.model, ensemble.Ensemble) else [self.model]:
            member.network.to(self.device)
        self.task = task_of(self.model.config)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts, not one string")
        if isinstance(self.model, ensemble.Ensemble):
            return self.model.predict(texts, self.batch_size, self.device)
        return self.task.predict(self.model, texts, self.batch_size, self.device)


def predict_corpus(predictor: Predictor, texts: Sequence[str], progress: bool = True) -> list[Prediction]:
    """``predictor.predict(texts)`` one batch of texts at a time, with a bar on a terminal and a
    line every 30 s in a log: what a command predicting a corpus shows while it works (a
    transformer takes minutes over 235 clinical cases on a CPU); ``progress=False`` prints nothing.
    The same predictions as one ``predict`` call."""
    size = predictor.batch_size
    batches = [texts[start:start + size] for start in range(0, len(texts), size)]
    predictions: list[Prediction] = []
    for batch in Progress(len(batches), enabled=progress).steps(batches, "predicting"):
        predictions.extend(predictor.predict(batch))
    return predictions


def measure_latency(model: TrainedModel, texts: Sequence[str], threads: int = 1,
                    warmup: int = 10) -> dict[str, float]:
    """``latency_ms_p50``: the median time to predict one text, one at a time, on ``threads``
    torch threads and the model's own device; ``parameters``: its weight count. What a sweep
    logs per trial for the F1-vs-latency frontier."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        predictor = Predictor(model, batch_size=1, device=next(model.network.parameters()).device)
        for text in texts[:warmup]:
            predictor.predict([text])
        times = []
        for text in texts:
            started = time.perf_counter()
            predictor.predict([text])
            times.append((time.perf_counter() - started) * 1000)
    finally:
        torch.set_num_threads(previous)
    return {"latency_ms_p50": float(statistics.median(times)) if times else float("nan"),
            "parameters": float(model.num_parameters)}
