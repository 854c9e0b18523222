"""Ray start-up for the Ray-backed commands (``profner tune`` / ``refit`` in ``trainables``,
``profner serve`` in ``serve``): connect to an existing cluster, or start a private local
instance (``address="local"``: never another developer's ``ray start`` cluster), with the
environment the workers need to import this project and stay offline.

A private local instance listens on loopback only. Ray's gRPC servers and agents bind to the
node IP, which Ray resolves to the machine's outward address on Linux even when asked for
127.0.0.1; its local-only mode (the default on macOS and Windows, where Ray has no clusters)
keeps every one on 127.0.0.1. That mode is read from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` at
import by each Ray process, so ``start`` sets it for the processes it starts and for this one,
which imported Ray already; connecting to a cluster puts the user's setting back. Beside each
local instance runs ``profner_ray.reaper``, which stops what a killed driver leaves behind.

Authentication is decided once, here, for the head and every worker alike: the user's
``RAY_AUTH_MODE`` when the shell holds one, else Ray's own default for a new local instance,
token authentication (the token lives in ``~/.ray/auth_token``, made on first use). Workers
inherit the mode from the raylet that starts them, so it is never handed to them through the
runtime environment (a head with tokens and workers told ``disabled`` never start a worker).
On a cluster (``address``) the cluster's setting stands and the driver uses the user's.

Imports Ray only (``profner_models`` never does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PROFNER_DATA_DIR")
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_ENV, LOCAL_AUTH_DEFAULT = "RAY_AUTH_MODE", "token"
_USER_LOCAL_ONLY = os.environ.get(LOCAL_ONLY_ENV)
_reapers: list[subprocess.Popen] = []


def worker_env() -> dict[str, str]:
    """What every worker gets: this checkout on its path, offline hubs (not the auth mode:
    workers take the raylet's)."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    env.update({key: os.environ[key] for key in PASSED_ENV if key in os.environ})
    return env


def start(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None,
          env: dict[str, str] | None = None, **extra: Any) -> bool:
    """Connect to ``address`` or start a private local Ray; returns whether this call started
    an instance of its own (the caller then shuts it down). ``env``: more variables for every
    worker (``worker_env``'s and these); ``extra``: more ``ray.init`` options."""
    if ray.is_initialized():
        return False
    if not sys.stderr.isatty():  # Ray colours the workers' log prefixes: not in log files
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": {**worker_env(), **(env or {})}},
                              "configure_logging": False, **extra}
    if address:
        _local_only(False)
        ray.init(address=address, **kwargs)
        return False
    _local_only(True)
    local_auth_mode()
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             _temp_dir=temp_dir, **kwargs)
    _start_reaper()
    return True


def local_auth_mode() -> str:
    """The auth mode of a new local instance: the user's ``RAY_AUTH_MODE``, else token auth.
    Set in this process's environment, which the head and (through the raylet) every worker
    inherit, and in Ray's already imported config (read at import, as Ray's own default does)."""
    from ray._raylet import Config

    mode = os.environ.get(AUTH_ENV) or LOCAL_AUTH_DEFAULT
    if os.environ.get(AUTH_ENV) != mode:
        os.environ[AUTH_ENV] = mode
        Config.initialize("")
    return mode


def _local_only(on: bool) -> None:
    """Ray's local-only mode (loopback addresses) on or back to the user's setting."""
    from ray._private import ray_constants

    value = "0" if on else _USER_LOCAL_ONLY
    if value is None:
        os.environ.pop(LOCAL_ONLY_ENV, None)
    else:
        os.environ[LOCAL_ONLY_ENV] = value
    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(
        LOCAL_ONLY_ENV, not ray_constants.IS_WINDOWS_OR_OSX)


def _start_reaper() -> None:
    """``profner_ray.reaper`` for the instance just started (its own session, so a Ctrl-C of
    the driver's terminal does not stop it before it is needed)."""
    from ray._private import worker

    _reapers[:] = [reaper for reaper in _reapers if reaper.poll() is None]  # collect finished
    session_dir = worker.global_worker.node.get_session_dir_path()
    _reapers.append(subprocess.Popen(
        [sys.executable, "-m", "profner_ray.reaper", str(os.getpid()), session_dir],
        env={**os.environ, **worker_env()}, stdin=subprocess.DEVNULL, start_new_session=True))
