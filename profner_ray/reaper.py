"""Stops what a private local Ray instance leaves behind when its driver is killed.

Ray's own processes fate-share with the driver that started them, but its agents
(``DashboardAgent``, ``RuntimeEnvAgent``) outlive a SIGKILLed driver by a minute or more: they
try to report the dead raylet to a GCS that died too. ``profner_ray.start`` therefore starts
this watcher beside every local instance:

    python -m profner_ray.reaper DRIVER_PID SESSION_DIR

While the driver lives it records, every ``POLL_S``, the driver's children whose command line
names ``SESSION_DIR`` (GCS, raylet, monitor, ...) and all their descendants (agents, workers).
Once the driver is gone it waits ``GRACE_S`` (a clean ``ray.shutdown`` has stopped everything
by then) and SIGKILLs whatever it recorded that still runs (same pid *and* start time, so a
reused pid is never hit). It exits by itself when the instance was shut down while the driver
goes on. Linux only (``/proc``); elsewhere it exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 1.0
GRACE_S = 3.0
PROC = Path("/proc")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks), or None once the process is gone (or a
    zombie, which has nothing left to stop)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ray_processes(driver: int, session_dir: str) -> dict[int, int]:
    """pid -> start time of the instance's processes: the driver's children naming
    ``session_dir`` (but this watcher) and all their descendants."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    todo = [pid for pid in parents.get(driver, [])
            if pid != os.getpid() and session_dir in _cmdline(pid)]  # not this watcher
    found: dict[int, int] = {}
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo.extend(parents.get(pid, []))
    return found


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == start


def watch(driver: int, session_dir: str) -> int:
    """Record the instance's processes while ``driver`` lives; then stop the ones left.
    Returns how many it stopped."""
    known: dict[int, int] = {}
    while os.getppid() == driver:
        known.update(ray_processes(driver, session_dir))
        if known and not any(_alive(pid, start) for pid, start in known.items()):
            return 0  # shut down while the driver goes on
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    stopped = 0
    for pid, start in known.items():
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
                stopped += 1
            except OSError:
                continue
    return stopped


def main(argv: list[str]) -> int:
    if not PROC.is_dir():
        return 0
    driver, session_dir = int(argv[0]), argv[1]
    stopped = watch(driver, session_dir)
    if stopped:
        print(f"profner_ray.reaper: the driver {driver} died; stopped {stopped} Ray processes "
              f"it left ({session_dir})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
