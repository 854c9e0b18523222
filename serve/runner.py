"""Running the app on a private local Ray instance: start, wait until ready, stop; detached
servers and ``--stop``.

A local server owns its Ray instance (``address="local"``, its own temp dir), so it never joins
or stops another user's Ray on the same machine, and ``stop`` (``serve.shutdown`` then
``ray.shutdown``) leaves no process behind. From the moment it starts (not only once ready),
a state file (``<state dir>/<port>.json``: pid, its start time, URL, whether it is ready yet)
lets ``profner serve --stop`` find it and Ctrl-C it (SIGTERM is handled the same way), so a
server stuck while starting can be stopped like a running one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import serve

import profner_ray
from serve.app import APP_NAME, build_app
from serve.schemas import ServeSettings

READY_TIMEOUT_S = 300.0
# A local instance runs Serve's user code and router on each process's main event loop, not on
# extra threads: on a small machine every hop between threads waits for the GIL
# (bench/serving.py: one-tweet p50 18.2 -> 16.8 ms, concurrency-32 throughput 112 -> 155 req/s
# on 2 cores). The model still runs in a worker thread (serve/app.py), so /health answers.
LOCAL_SERVE_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                   "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
                   "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
STOP_TIMEOUT_S = 120.0
_session: dict[str, object] = {}  # whether this process started its Ray; a direct-ingress port


def state_dir() -> Path:
    """Where running servers are recorded (``PROFNER_SERVE_STATE_DIR`` overrides)."""
    default = Path.home() / ".cache" / "profner" / "serve"
    return Path(os.environ.get("PROFNER_SERVE_STATE_DIR", default))


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a
        try:                                                        # TIME_WAIT is not "in use"
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_port_free(host: str, port: int) -> None:
    if port_in_use(host, port):
        raise OSError(f"port {port} on {host} is already in use")


def direct_ingress(settings: ServeSettings) -> bool:
    """Whether a local server's one replica answers HTTP itself (Ray Serve's direct ingress),
    with no proxy process and no hop between them: p50 of one tweet 11 -> 3 ms on 2 cores
    (bench/serving.py). Several replicas share one port only through Serve's proxy; and
    ``RAY_SERVE_ENABLE_DIRECT_INGRESS=0`` in the user's environment turns it off."""
    return settings.replicas == 1 and os.environ.get(DIRECT_INGRESS_ENV) != "0"


def direct_ingress_env(port: int) -> dict[str, str]:
    """Direct ingress on exactly ``port`` (Serve's range is [min, max)), no drain period or
    port quarantine on stop: the whole local instance stops with its one replica."""
    return {DIRECT_INGRESS_ENV: "1", "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",
            "RAY_SERVE_PORT_QUARANTINE_S": "0"}


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start(settings: ServeSettings, host: str, port: int, ray_temp_dir: str | None = None,
          ray_address: str | None = None, ready_timeout_s: float = READY_TIMEOUT_S) -> str:
    """Start Ray (a new local instance unless ``ray_address``), Serve and the app; returns
    the URL once ``GET /health`` answers. On failure, what was started is stopped again."""
    if ray_address is None:
        ensure_port_free(host, port)
    _session["owns_ray"] = ray_address is None
    try:
        temp_dir = ray_temp_dir or os.path.join(tempfile.gettempdir(), f"profner-serve-{port}")
        direct = ray_address is None and direct_ingress(settings)
        # Serve's settings, read at import by the controller, proxy and replicas of a local
        # instance: through the runtime environment of its workers, not this process's
        env = {} if ray_address else {**LOCAL_SERVE_ENV, **(direct_ingress_env(port) if direct else {})}
        profner_ray.start(ray_address, max(os.cpu_count() or 1,
                                           math.ceil(settings.replicas * settings.num_cpus)),
                          temp_dir, env=env, log_to_driver=False,
                          **({} if ray_address else {"object_store_memory": 256 * 1024**2}))
        _session["port"] = (host, port) if direct else None
        # With direct ingress the replica answers on `port` itself; Serve's proxy, which it
        # starts anyway, is left on a free port of its own
        proxy_port = free_port(host) if direct else port
        serve.start(http_options={"host": host, "port": proxy_port}, proxy_location="HeadOnly")
        url = url_for(host, port)
        deploy(settings, url, ready_timeout_s)
        return url
    except BaseException:
        stop()
        raise


def deploy(settings: ServeSettings, url: str, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
    """Deploy the app with ``settings`` on the running Serve; returns once it answers."""
    try:
        serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    except RuntimeError as error:  # Serve's own message only says "failed": add the replicas'
        status = serve.status().applications.get(APP_NAME)
        reasons = [d.message for d in status.deployments.values() if d.message] if status else []
        raise RuntimeError("\n".join([str(error), *reasons])) from None
    wait_ready(url, ready_timeout_s)


def stop(timeout_s: float = 60.0) -> None:
    """Undo ``start`` (idempotent): on our own Ray instance shut Serve down, on a cluster given
    by ``ray_address`` delete only our app; then disconnect (and stop our instance). If Serve
    does not answer within ``timeout_s`` (its processes were killed from outside), Ray is
    stopped anyway."""
    if not ray.is_initialized():
        return
    undo = serve.shutdown if _session.get("owns_ray", True) else (lambda: serve.delete(APP_NAME))
    worker = threading.Thread(target=undo, name="serve-stop", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        print(f"profner serve: Serve did not stop within {timeout_s:.0f} s; stopping Ray",
              file=sys.stderr, flush=True)
    ray.shutdown()
    if _session.get("port"):  # a direct-ingress replica holds the port until its process ends
        _wait_port_free(*_session.pop("port"), timeout_s)


def _wait_port_free(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while port_in_use(host, port) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer within {timeout_s:.0f} s")
        time.sleep(0.25)


def serve_forever(settings: ServeSettings, host: str, port: int, ray_temp_dir: str | None = None,
                  ray_address: str | None = None) -> int:
    """Blocking ``profner serve``: start, record the state file, wait for Ctrl-C (or SIGTERM,
    handled alike), then shut down in order; a second Ctrl-C during shutdown is ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if ray_address is None:  # before the record: a port in use is another server's
        ensure_port_free(host, port)
    state = state_dir() / f"{port}.json"
    _write_state(state, url_for(host, port), settings, ready=False)
    try:
        url = start(settings, host, port, ray_temp_dir, ray_address)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # ray.init installed its own
        _write_state(state, url, settings, ready=True)
        print(f"profner serve: {settings.model} at {url}  (API docs {url}/docs; Ctrl-C stops)",
              flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("profner serve: shutting down", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            stop()
        finally:
            state.unlink(missing_ok=True)
    print("profner serve: stopped", flush=True)
    return 0


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


def _write_state(path: Path, url: str, settings: ServeSettings, ready: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"port": int(url.rsplit(":", 1)[1]), "pid": os.getpid(), "url": url,
              "model": settings.model, "started": _process_start(os.getpid()), "ready": ready}
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
