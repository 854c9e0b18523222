"""Helpers shared by test_serve.py and test_serve_fuzz.py: a tiny trained model, a real
``profner serve`` process on a free loopback port, HTTP calls, and process bookkeeping."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from profner_models import artifacts

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "profner_models" / "configs" / "smoke_rnn.yaml"
MAX_TEXTS, MAX_CHARS, MAX_BATCH = 8, 400, 8  # the shared server's limits


def tiny_model(base: Path) -> Path:
    """The smoke model trained on the bundled sample, once per pytest session (both serve test
    files call this with the session's base temp dir). 6 epochs (~6 s): after 2 it tags
    nothing yet, and the offset checks need entities."""
    model_dir = base / "serve-tiny-model"
    if (model_dir / "meta.json").is_file():
        return model_dir
    import torch

    from profner_models.training import fit, load_task_data

    torch.set_num_threads(1)
    config = yaml.safe_load(SMOKE_CONFIG.read_text(encoding="utf-8"))
    config.setdefault("training", {})["epochs"] = 6
    train, dev = load_task_data(config, None)
    artifacts.save(fit(config, train, dev, progress=False).model, model_dir)
    return model_dir


def short_temp_dir() -> str:
    """A Ray temp dir with a short path (Ray's unix sockets live below it: 107-byte limit)."""
    return tempfile.mkdtemp(prefix="pfs", dir="/tmp")


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999): a port the OS hands
    out for bind(0) can be taken by an outgoing connection (Ray's own, by the hundred) before
    the server binds it, which failed a server start once (Serve's NoAvailablePortError)."""
    for _ in range(100):
        port = random.randrange(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free loopback port in 20000-31999")


def profner_env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1",
            "PROFNER_SERVE_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}


def profner(*args: str, state_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "profner_models.cli.main", *args],
                          env=profner_env(state_dir), capture_output=True, text=True,
                          timeout=timeout)


class ServerProcess:
    """``profner serve MODEL --detach --port P ...`` with a private Ray temp dir: the server runs
    in its own session, recorded in ``state_dir`` for ``profner serve --stop``."""

    def __init__(self, model_ref: str | Path, *options: str, state_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ray_temp = short_temp_dir()
        self.state_dir = state_dir
        self.state = state_dir / f"{self.port}.json"
        self.log_path = state_dir / f"{self.port}.log"
        started = profner("serve", str(model_ref), "--detach", "--port", str(self.port),
                          "--ray-temp-dir", self.ray_temp, *options, state_dir=state_dir)
        if started.returncode != 0 or started.stdout.strip().splitlines()[-1:] != [self.url]:
            shutil.rmtree(self.ray_temp, ignore_errors=True)
            raise RuntimeError(f"profner serve --detach failed ({started.returncode}):\n"
                               f"{started.stdout}\n{started.stderr}")
        self.pid = json.loads(self.state.read_text(encoding="utf-8"))["pid"]

    def running(self) -> bool:
        return bool(alive({self.pid}))

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> subprocess.CompletedProcess:
        """``profner serve --stop --port P`` (a Ctrl-C to the server's process group)."""
        return profner("serve", "--stop", "--port", str(self.port), state_dir=self.state_dir)

    def close(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.ray_temp, ignore_errors=True)


def request(url: str, body: bytes | None = None, content_type: str | None = "application/json",
            method: str | None = None, timeout: float = 60) -> tuple[int, object]:
    """(status, parsed JSON answer or raw text) for one HTTP call; never raises on 4xx/5xx."""
    headers = {"Content-Type": content_type} if content_type and body is not None else {}
    call = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def get(url: str, timeout: float = 60) -> tuple[int, object]:
    return request(url, timeout=timeout)


def post_json(url: str, value: object, timeout: float = 60) -> tuple[int, object]:
    return request(url, json.dumps(value).encode("utf-8"), timeout=timeout)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def names(pids: set[int]) -> list[str]:
    """The process names (``comm``) of those of ``pids`` still there."""
    found = []
    for pid in sorted(pids):
        try:
            found.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return found


def outward_listeners(pids: set[int]) -> list[str]:
    """'pid address:port' of each listening socket of ``pids`` not on loopback."""
    import psutil  # a dev dependency, for the sockets of other processes

    found = []
    for conn in psutil.net_connections("inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            ip = conn.laddr.ip.removeprefix("::ffff:")
            if not (ip.startswith("127.") or ip == "::1"):
                found.append(f"{conn.pid} {conn.laddr.ip}:{conn.laddr.port}")
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running


_shared: dict[str, object] = {}


def mlflow_run(base: Path) -> tuple[str, str]:
    """(tracking URI, run id): the tiny model logged as artifacts ``model/`` of a run (tagged
    like a Tune trial) and registered as version 1 of ``profner-tiny``, in a sqlite store;
    once per session."""
    if "mlflow" not in _shared:
        import mlflow

        tracking_uri = f"sqlite:///{base}/mlflow.db"
        mlflow.set_tracking_uri(tracking_uri)
        experiment = mlflow.create_experiment(  # artifacts under base, not ./mlruns
            "serve-test", artifact_location=(base / "mlartifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment, run_name="trial-0") as run:
            mlflow.set_tag("trial_id", "abc_00000")
            mlflow.log_artifacts(str(tiny_model(base)), artifact_path="model")
        client = mlflow.MlflowClient(tracking_uri)
        client.create_registered_model("profner-tiny")
        client.create_model_version("profner-tiny", f"{run.info.artifact_uri}/model",
                                    run.info.run_id)
        _shared["mlflow"] = (tracking_uri, run.info.run_id)
    return _shared["mlflow"]


def shared_server(base: Path) -> ServerProcess:
    """One detached ``profner serve runs:/<id>/model`` for both serve test files of a session,
    started on first use (again if a test has stopped it)."""
    process = _shared.get("server")
    if process is None or not process.running():
        state_dir = base / "serve-state"
        state_dir.mkdir(exist_ok=True)
        tracking_uri, run_id = mlflow_run(base)
        process = ServerProcess(f"runs:/{run_id}/model", "--tracking-uri", tracking_uri,
                                "--max-texts", str(MAX_TEXTS), "--max-chars", str(MAX_CHARS),
                                "--max-batch-size", str(MAX_BATCH), "--batch-wait-ms", "5",
                                state_dir=state_dir)
        _shared["server"] = process
    return process
