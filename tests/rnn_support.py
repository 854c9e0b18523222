"""Shared, cached System 2 fits on the bundled sample for the model/training/artifact tests.

A module-level cache (not a fixture) so several test files share one fit per process.
"""

from __future__ import annotations

import copy
from functools import lru_cache

from profner_models.config import load_config
from profner_models.training import FitResult, fit, load_task_data


def smoke_config(**training) -> dict:
    config = load_config("smoke_rnn")
    config["training"].update(training)
    return config


@lru_cache(maxsize=None)
def sample_data() -> tuple[tuple, tuple]:
    train, dev = load_task_data(smoke_config(), None)
    return tuple(train), tuple(dev)


@lru_cache(maxsize=None)
def trained(epochs: int = 4) -> FitResult:
    """The smoke config fitted on the sample (treat as read-only)."""
    train, dev = sample_data()
    return fit(smoke_config(epochs=epochs), list(train), list(dev), progress=False)


def fresh_config() -> dict:
    return copy.deepcopy(smoke_config())
