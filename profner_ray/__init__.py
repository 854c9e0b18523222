"""Ray start-up for the Ray-backed commands (``profner tune`` / ``refit`` in ``trainables``,
``profner serve`` in ``serve``): connect to an existing cluster, or start a private local
instance (``address="local"``: never another developer's ``ray start`` cluster), with the
environment the workers need to import this project and stay offline.

Imports Ray only (``profner_models`` never does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROFNER_DATA_DIR")


def worker_env() -> dict[str, str]:
    """What every worker gets: this checkout on its path, Ray's auth mode, offline hubs."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "TOKENIZERS_PARALLELISM": "false"}
    env.update({key: os.environ[key] for key in PASSED_ENV if key in os.environ})
    return env


def start(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None,
          **extra: Any) -> bool:
    """Connect to ``address`` or start a private local Ray; returns whether this call started
    an instance of its own (the caller then shuts it down). ``extra``: more ``ray.init`` options."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "configure_logging": False,
                              **extra}
    if address:
        ray.init(address=address, **kwargs)
        return False
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             _temp_dir=temp_dir, **kwargs)
    return True
