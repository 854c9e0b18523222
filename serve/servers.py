"""The servers ``profner serve`` runs on this machine: their state files, ``--detach`` and
``--stop``.

A server records itself from the moment it starts (``record``: ``<state dir>/<port>.json``
with its pid, the pid's start time, URL, model and whether it is ready yet) and removes the
record when it stops; ``running`` lists the records whose process still runs (pid *and* start
time, so a reused pid never counts), ``stop_running`` Ctrl-Cs one as its terminal would, and
``spawn_detached`` runs a blocking ``profner serve`` in its own session and returns once it has
recorded itself ready. Linux ``/proc`` tells a process's start time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 120.0


def state_dir() -> Path:
    """Where running servers are recorded (``PROFNER_SERVE_STATE_DIR`` overrides)."""
    default = Path.home() / ".cache" / "profner" / "serve"
    return Path(os.environ.get("PROFNER_SERVE_STATE_DIR", default))


@dataclass(frozen=True)
class Running:
    """A server recorded in the state dir."""

    port: int
    pid: int
    url: str
    model: str
    path: Path
    ready: bool = True

    @property
    def log(self) -> Path:
        """Where a detached server writes its output."""
        return self.path.with_suffix(".log")

    def alive(self, started: float | None = None) -> bool:
        return _process_start(self.pid) is not None and (
            started is None or _process_start(self.pid) == started)


def running(port: int | None = None) -> list[Running]:
    """Recorded servers whose process still runs (stale records are removed)."""
    found = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            entry = Running(int(record["port"]), int(record["pid"]), record["url"],
                            record["model"], path, bool(record.get("ready", True)))
            started = float(record["started"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not entry.alive(started):
            path.unlink(missing_ok=True)
            continue
        if port is None or entry.port == port:
            found.append(entry)
    return found


def spawn_detached(argv: list[str], port: int, timeout_s: float = READY_TIMEOUT_S) -> Running:
    """Run ``profner <argv>`` (a blocking serve) in its own session, logging to
    ``<state dir>/<port>.log``; return once it has recorded itself as ready."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"{port}.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "profner_models.cli.main", *argv],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"the server exited with status {child.returncode}; "
                               f"log {log_path}:\n{tail}")
        for entry in running(port):
            if entry.pid == child.pid and entry.ready:
                return entry
        time.sleep(0.5)
    child.terminate()
    raise TimeoutError(f"the server was not ready within {timeout_s:.0f} s; log {log_path}")


def stop_running(entry: Running, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Ctrl-C a recorded server as its terminal would (SIGINT to its process group when it
    leads one, as a detached server does; else to the process) and wait until it has gone;
    False on timeout. Ray's own processes ignore SIGINT and are stopped by the server."""
    try:
        if os.getpgid(entry.pid) == entry.pid:
            os.killpg(entry.pid, signal.SIGINT)
        else:
            os.kill(entry.pid, signal.SIGINT)
    except ProcessLookupError:
        entry.path.unlink(missing_ok=True)
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _process_start(entry.pid) is None:
            entry.path.unlink(missing_ok=True)
            return True
        time.sleep(0.2)
    return False


def record(path: Path, url: str, model: str, ready: bool) -> None:
    """Write (or rewrite) this process's state file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"port": int(url.rsplit(":", 1)[1]), "pid": os.getpid(), "url": url,
              "model": model, "started": _process_start(os.getpid()), "ready": ready}
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(record), encoding="utf-8")
    temp.replace(path)


def _process_start(pid: int) -> float | None:
    """The process's start time (clock ticks since boot, from /proc), None when it is gone
    or a zombie: with the pid it identifies a process even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else float(fields[19])
