"""The user-facing commands as a user types them: from a clean environment.

Every other test inherits the variables ``tests/conftest.py`` and the scripts may set; here each
command runs under ``env -i HOME=<a fresh home> PATH=/usr/bin:/bin`` and the venv's own
``profner`` script, so a command that only works with something exported (the Ray auth mode
was one: ``profner serve`` hung in a fresh shell) fails here. The fresh home also means no Ray
token, no MLflow or Hugging Face cache, no serve state from an earlier run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_support import alive, descendants, free_port, get, post_json, short_temp_dir, tiny_model
from tune_support import kill_ray_under

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PROFNER = str(BIN / "profner")
READY_S = 60


def clean_env(home: Path) -> dict[str, str]:
    """What ``env -i HOME=... PATH=/usr/bin:/bin`` leaves."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": "/usr/bin:/bin"}


def run(args: list[str], home: Path, timeout: float = 300, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=clean_env(home), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def test_serve_starts_answers_and_stops_from_a_clean_shell(tmp_path_factory) -> None:
    model = tiny_model(tmp_path_factory.getbasetemp())
    home, port = tmp_path_factory.mktemp("home"), free_port()
    log = home / "serve.log"
    with open(log, "wb") as out:  # in the foreground, as typed: profner serve MODEL --port P
        server = subprocess.Popen([PROFNER, "serve", str(model), "--port", str(port)],
                                  env=clean_env(home), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    tree: set[int] = set()
    try:
        deadline, status = time.monotonic() + READY_S, 0
        while time.monotonic() < deadline and server.poll() is None:
            tree |= descendants(server.pid)
            status, body = get(f"http://127.0.0.1:{port}/health", timeout=5)
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"not healthy within {READY_S} s:\n{log.read_text()[-3000:]}"
        status, body = post_json(f"http://127.0.0.1:{port}/predict",
                                 {"text": "Aplausos para las enfermeras del hospital 👏"})
        assert status == 200 and body["predictions"][0]["label"] in (0, 1)
        tree |= descendants(server.pid)
        stopped = run([PROFNER, "serve", "--stop", "--port", str(port)], home, timeout=150)
        assert stopped.returncode == 0 and f"127.0.0.1:{port}" in stopped.stdout, stopped
        assert server.wait(timeout=30) == 0
        assert "profner serve: stopped" in log.read_text()
        assert get(f"http://127.0.0.1:{port}/health", timeout=5)[0] == 0
        assert not (home / ".cache/profner/serve" / f"{port}.json").exists()
    finally:
        if server.poll() is None:
            server.kill()
        time.sleep(1)
        for pid in alive(tree):
            subprocess.run(["kill", "-9", str(pid)], check=False)


def test_serve_stop_finds_a_server_that_is_still_starting(tmp_path_factory) -> None:
    """``--stop`` right after the start: the server is recorded before it is ready."""
    model = tiny_model(tmp_path_factory.getbasetemp())
    home, port = tmp_path_factory.mktemp("home"), free_port()
    server = subprocess.Popen([PROFNER, "serve", str(model), "--port", str(port)],
                              env=clean_env(home), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        record = home / ".cache/profner/serve" / f"{port}.json"
        deadline = time.monotonic() + 30
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(record.read_text())["ready"] is False
        stopped = run([PROFNER, "serve", "--stop", "--port", str(port)], home, timeout=150)
        assert stopped.returncode == 0 and "still starting" in stopped.stdout, stopped
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 0 and "Traceback" not in output, output
        assert not record.exists()
    finally:
        if server.poll() is None:
            server.kill()


@pytest.fixture(scope="module")
def clean_sweep(tmp_path_factory):
    """``profner tune smoke`` from a clean shell (2 trials), its working dir and home."""
    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
    ray_temp = short_temp_dir()
    try:
        result = run([PROFNER, "tune", "smoke", "--num-samples", "2", "--max-concurrent", "1",
                      "--name", "clean", "--no-report", "--ray-temp-dir", ray_temp,
                      "--storage", str(work / "runs"), "--export", str(work / "best")],
                     home, timeout=600, cwd=work)
    finally:
        kill_ray_under(Path(ray_temp))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work, home, result


def test_tune_runs_from_a_clean_shell(clean_sweep) -> None:
    work, _, result = clean_sweep
    assert "trials: 2 (0 errored)" in result.stdout
    assert (work / "best" / "meta.json").is_file() and (work / "mlflow.db").is_file()


def test_the_registered_model_takes_a_str_a_list_and_a_data_frame(clean_sweep) -> None:
    work, home, _ = clean_sweep
    script = (
        "import json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri('sqlite:///{work}/mlflow.db')\n"
        "model = mlflow.pyfunc.load_model('models:/profner-smoke/1')\n"
        "texts = ['El alcalde y la enfermera trabajan en el hospital.', 'Hola']\n"
        "out = {'str': model.predict(texts[0]).to_dict('list'),\n"
        "       'list': model.predict(texts).to_dict('list'),\n"
        "       'frame': model.predict(pd.DataFrame({'text': texts})).to_dict('list')}\n"
        "print(json.dumps(out))\n")
    result = run([str(BIN / "python"), "-c", script], home, timeout=300, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["str"]["label"]) == 1 and len(out["list"]["label"]) == 2
    assert out["list"] == out["frame"]
    assert out["str"]["entities"] == out["list"]["entities"][:1]
