"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines otherwise.

A log file or a CI console gets one line every ``every_s`` seconds (and one per epoch from the
caller), never one per bar refresh: ``epoch 2/10 step 300/1500 loss 0.812 21.4 batches/s ETA
56s`` (``predicting step 3/8 0.1 batches/s ETA 40s`` where there is no loss). ``report(line)``
prints an epoch summary either way. ``quiet_transformers()`` keeps transformers' own bars and
load reports out of a job's output.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import IO, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class Progress:
    """Steps of a run of ``total`` steps; ``enabled=False`` prints nothing."""

    def __init__(self, total: int, enabled: bool = True, every_s: float = 30.0,
                 stream: IO[str] | None = None) -> None:
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.stream = stream or sys.stderr
        self.terminal = enabled and self.stream.isatty()
        self.done = 0
        self.started = self.last = time.monotonic()

    def steps(self, items: Iterable[T], label: str) -> Iterator[T]:
        """``items`` (one step each) under ``label`` ("epoch 2/10", "predicting"), showing
        progress; ``set_loss`` feeds the loss shown."""
        self._loss: float | None = None
        if self.terminal:
            bar = tqdm(items, desc=label, leave=False, file=self.stream)
            for item in bar:
                yield item
                self.done += 1
                if self._loss is not None:
                    bar.set_postfix(loss=f"{self._loss:.3f}")
            return
        for item in items:
            yield item
            self.done += 1
            now = time.monotonic()
            if self.enabled and now - self.last >= self.every_s:
                self.last = now
                self._line(label, now)

    def set_loss(self, loss: float) -> None:
        self._loss = loss

    def _line(self, label: str, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        loss = f" loss {self._loss:.3f}" if self._loss is not None else ""
        print(f"{label} step {self.done}/{self.total}{loss} {rate:.1f} batches/s ETA {eta:.0f}s",
              file=self.stream, flush=True)

    def report(self, line: str) -> None:
        if not self.enabled:
            return
        if self.terminal:
            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers without its load reports and progress bars (loading, saving), restored after:
    a main job's output says what our code decides, not what a library does on the way."""
    from transformers.utils import logging as hf_logging  # lazy: seconds to import

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
