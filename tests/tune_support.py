"""Helpers shared by the tune tests: run ``profner`` in a subprocess, read the MLflow store,
and clean up any Ray process left under a test's private Ray temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_support import descendants

REPO = Path(__file__).resolve().parents[1]
PROFNER = [sys.executable, "-m", "profner_models.cli.main"]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0")
    out.pop("RAY_ADDRESS", None)
    out.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # as a user's shell: profner_ray sets it
    return out


def short_temp_dir(prefix: str) -> Path:
    """Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def tune_command(space: str | Path, tmp: Path, *extra: str, name: str = "sweep") -> list[str]:
    return [*PROFNER, "tune", str(space), "--name", name, "--storage", str(tmp / "runs"),
            "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--no-report", *extra]


def run_profner(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")


def all_runs(tmp: Path, deleted: bool = False) -> list:
    from mlflow.entities import ViewType

    c = client(tmp)
    ids = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(ids, run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY,
                         max_results=1000)


def kill_ray_under(temp_dir: Path) -> None:
    """SIGKILL processes whose command line names ``temp_dir`` and their descendants (Ray's
    agents rename themselves), this test's own Ray only."""
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(temp_dir) in cmdline:
            for pid in descendants(int(proc.name)) | {int(proc.name)}:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None
