"""A sweep's commands as a user types them, from a clean environment (``clean_shell_support``):
``profner tune``, the model it registered taken by MLflow's pyfunc, ``profner refit`` and
``profner ui`` on the sweep's store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from clean_shell_support import BIN, PROFNER, READY_S, clean_env, run
from serve_support import free_port, get, short_temp_dir
from tune_support import kill_ray_under

pytestmark = pytest.mark.slow


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


def test_refit_runs_from_a_clean_shell(clean_sweep) -> None:
    """``profner refit`` starts its own Ray for the seed sweep, as ``tune`` does."""
    work, home, _ = clean_sweep
    ray_temp = short_temp_dir()
    try:
        result = run([PROFNER, "refit", str(work / "runs" / "clean"), "--seeds", "2",
                      "--out", str(work / "refit"), "--ray-temp-dir", ray_temp],
                     home, timeout=600, cwd=work)
    finally:
        kill_ray_under(Path(ray_temp))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "refit on train+dev" in result.stdout and "viewStateShareKey=" in result.stdout
    assert json.loads((work / "refit" / "meta.json").read_text())["unseen"]["check"]["passed"]
    # a log, not a terminal: no MLflow download bars or INFO lines when the model is logged
    output = result.stdout + result.stderr
    assert "Downloading artifacts" not in output and "INFO mlflow" not in output, output[-3000:]


def test_the_ui_serves_the_sweeps_store_from_a_clean_shell(clean_sweep) -> None:
    """``profner ui`` in the sweep's working dir: the UI answers, and the store it reads holds
    the sweep's saved view."""
    work, home, _ = clean_sweep
    port = free_port()
    with open(home / "ui.log", "wb") as out:
        ui = subprocess.Popen([PROFNER, "ui", "--port", str(port)], env=clean_env(home), cwd=work,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, status = time.monotonic() + READY_S, 0
        while time.monotonic() < deadline and ui.poll() is None and status != 200:
            time.sleep(0.5)
            status, _ = get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert status == 200, (home / "ui.log").read_text()[-3000:]
        status, body = get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                           "?experiment_name=profner-smoke", timeout=30)
        assert status == 200, body
        tags = {t["key"] for t in body["experiment"].get("tags", [])}
        assert any(key.startswith("mlflow.sharedViewState.") for key in tags), tags
    finally:
        ui.terminate()
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ui.kill()
