"""Serve's lifecycle for ``profner serve``: start Ray and Serve, deploy the app, wait until it
answers, stop; ``serve_forever`` for the blocking command.

A local server owns its Ray instance (``address="local"``, its own temp dir), so it never joins
or stops another user's Ray on the same machine, and ``stop`` (``serve.shutdown`` then
``ray.shutdown``) leaves no process behind. ``serve_forever`` records the server from the moment
it starts (``serve.servers``), so ``profner serve --stop`` finds it even while it is starting;
SIGTERM is handled as Ctrl-C.
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

import ray
from ray import serve

import profner_ray
from serve import servers
from serve.app import APP_NAME, build_app
from serve.schemas import ServeSettings

# A local instance runs Serve's user code and router on each process's main event loop, not on
# extra threads: on a small machine every hop between threads waits for the GIL
# (bench/serving.py: one-tweet p50 18.2 -> 16.8 ms, concurrency-32 throughput 112 -> 155 req/s
# on 2 cores). Tweets run on that loop too, long texts on a thread (serve/app.py).
LOCAL_SERVE_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                   "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
                   "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
# Ray starts its workers at nice 15, below the driver. For a server the replica is the work: at
# nice 15 it waits behind every process of the machine, the clients' too (bench/README.md,
# 2026-12-08, 2 cores: concurrency-1 throughput +40-70% at nice 0). A local instance starts its
# workers without that offset.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}
DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
TIME_WAIT_S = 65.0  # Linux holds a closed TCP connection's port 60 s
_session: dict[str, object] = {}  # whether this process started its Ray; a direct-ingress port


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not bind the port now: something listens, or a connection
    the previous server closed is still in the kernel's TIME_WAIT (Serve's direct-ingress
    replica binds without SO_REUSEADDR, so its closed connections hold the port ~60 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a
        try:                                                        # reusable TIME_WAIT is
            sock.bind((host, port))                                 # not "in use"
        except OSError:
            return True
    return False


def listening(host: str, port: int) -> bool:
    """Whether something accepts connections on the port (a wildcard host is asked on
    loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    family = socket.AF_INET6 if ":" in shown else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        return sock.connect_ex((shown, port)) == 0


def held_by_time_wait(host: str, port: int) -> bool:
    """Nothing listens on the port, yet a server could not bind it yet (``port_in_use``)."""
    return not listening(host, port) and port_in_use(host, port)


def time_wait_note(port: int, wait_s: float = TIME_WAIT_S) -> str:
    return (f"profner serve: port {port} was closed moments ago (TCP TIME_WAIT); waiting up to "
            f"{wait_s:.0f} s for the kernel to release it")


def ensure_port_free(host: str, port: int, wait_s: float = TIME_WAIT_S) -> None:
    """Raise if a server listens on the port; if only the TIME_WAIT of a server stopped
    moments ago holds it, wait (up to ``wait_s``) for the kernel to release it."""
    if listening(host, port):
        raise OSError(f"port {port} on {host} is already in use")
    if not port_in_use(host, port):
        return
    print(time_wait_note(port, wait_s), file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait_s
    while port_in_use(host, port):
        if time.monotonic() > deadline:
            raise OSError(f"port {port} on {host} is still held {wait_s:.0f} s later "
                          "(TCP TIME_WAIT, or a socket bound without listening): "
                          "choose another --port")
        time.sleep(0.5)


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
          ray_address: str | None = None, ready_timeout_s: float = servers.READY_TIMEOUT_S) -> str:
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
                          **({} if ray_address else {"object_store_memory": 256 * 1024**2,
                                                     "_system_config": LOCAL_SYSTEM_CONFIG}))
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


def deploy(settings: ServeSettings, url: str, ready_timeout_s: float = servers.READY_TIMEOUT_S) -> None:
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
    if _session.get("port"):  # a direct-ingress replica listens until its process ends
        _wait_not_listening(*_session.pop("port"), timeout_s)


def _wait_not_listening(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while listening(host, port) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_ready(url: str, timeout_s: float = servers.READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while _health_status(url) != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/health did not answer within {timeout_s:.0f} s")
        time.sleep(0.25)


def _health_status(url: str) -> int | None:
    """``GET /health``'s status (None: no answer). A keep-alive request this side closes first,
    so the TIME_WAIT of the closed connection stays on this side's port, not the server's
    (``urllib`` asks the server to close, which would hold the server's port 60 s after a stop)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request("GET", "/health")
        answer = connection.getresponse()
        answer.read()
        return answer.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def serve_forever(settings: ServeSettings, host: str, port: int, ray_temp_dir: str | None = None,
                  ray_address: str | None = None) -> int:
    """Blocking ``profner serve``: start, record the state file, wait for Ctrl-C (or SIGTERM,
    handled alike), then shut down in order; a second Ctrl-C during shutdown is ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if ray_address is None:  # before the record: a port in use is another server's
        ensure_port_free(host, port)
    state = servers.state_dir() / f"{port}.json"
    servers.record(state, url_for(host, port), settings.model, ready=False)
    try:
        url = start(settings, host, port, ray_temp_dir, ray_address)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # ray.init installed its own
        servers.record(state, url, settings.model, ready=True)
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


