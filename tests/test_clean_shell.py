"""The user-facing commands as a user types them: from a clean environment.

Every other test inherits the variables ``tests/conftest.py`` and the scripts may set; here each
command runs under ``env -i HOME=<a fresh home> PATH=/usr/bin:/bin`` and the venv's own
``profner`` script, so a command that only works with something exported (the Ray auth mode
was one: ``profner serve`` hung in a fresh shell) fails here. The fresh home also means no Ray
token, no MLflow or Hugging Face cache, no serve state from an earlier run. The sweep's commands
(tune, refit, the registered model, the UI) are in ``test_clean_shell_sweep.py``.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from clean_shell_support import PROFNER, READY_S, clean_env, run
from serve_support import alive, descendants, free_port, get, post_json, tiny_model

pytestmark = pytest.mark.slow


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
        if stopped.returncode != 0:  # with what the server printed (timed out once: CI beside a training)
            server.kill()
            pytest.fail(f"{stopped}\nthe server's output:\n{server.communicate(timeout=60)[0][-3000:]}")
        assert "still starting" in stopped.stdout, stopped
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 0 and "Traceback" not in output, output
        assert not record.exists()
    finally:
        if server.poll() is None:
            server.kill()


def test_train_predict_evaluate_stats_and_register_from_a_clean_shell(tmp_path_factory) -> None:
    """The README's single-model path on the bundled sample: train (held-out run, refit,
    check), predict the sample's valid tweets, score them, the corpus statistics, and the
    model registered in the working dir's MLflow store."""
    from profner_models.sample import PROFNER_SAMPLE

    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
    model, valid = work / "model", PROFNER_SAMPLE / "subtask-2" / "brat" / "valid"
    trained = run([PROFNER, "train", "smoke_rnn", "--out", str(model), "--no-progress"],
                  home, timeout=600, cwd=work)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    assert "estimate" in json.loads((model / "meta.json").read_text())["unseen"]
    predicted = run([PROFNER, "predict", "--model", str(model), "--input", str(valid),
                     "--out-7a", str(work / "7a.tsv"), "--out-7b", str(work / "7b.tsv")],
                    home, cwd=work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = (work / "7a.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(list(valid.glob("*.txt")))  # a header, then a row per tweet
    scored = run([PROFNER, "evaluate", "--task", "7b", "--gold", str(valid),
                  "--pred", str(work / "7b.tsv"), "--json"], home, cwd=work)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert 0.0 <= json.loads(scored.stdout)["f1"] <= 1.0
    stats = run([PROFNER, "data", "stats", str(PROFNER_SAMPLE), "--json"], home, cwd=work)
    assert stats.returncode == 0, stats.stderr[-3000:]
    assert json.loads(stats.stdout)
    registered = run([PROFNER, "register", str(model)], home, cwd=work)  # the default store
    assert registered.returncode == 0, registered.stderr[-3000:]
    assert "registered profner-model version 1" in registered.stdout
    assert (work / "mlflow.db").is_file()


def test_combine_then_predict_from_a_clean_shell(tmp_path_factory) -> None:
    """Two held-out model dirs combined into one ensemble dir, scored on the dev split they
    held out, then predicted with like any model dir."""
    import shutil

    from profner_models.sample import PROFNER_SAMPLE

    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
    first = tiny_model(tmp_path_factory.getbasetemp())
    second = shutil.copytree(first, work / "second")
    combined = run([PROFNER, "combine", str(first), str(second), "--out", str(work / "ens"),
                    "--data", str(PROFNER_SAMPLE)], home, cwd=work)
    assert combined.returncode == 0, combined.stdout[-3000:] + combined.stderr[-3000:]
    assert json.loads(combined.stdout)["unseen"]["estimate"]["dev_docs"] > 0
    valid = PROFNER_SAMPLE / "subtask-2" / "brat" / "valid"
    predicted = run([PROFNER, "predict", "--model", str(work / "ens"), "--input", str(valid),
                     "--out-7b", str(work / "7b.tsv")], home, cwd=work)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert (work / "7b.tsv").read_text().startswith("tweet_id")


def test_a_killed_train_leaves_no_fit_running(tmp_path_factory) -> None:
    """``profner train --jobs 2`` runs the held-out fit in a second process; a SIGTERM to the
    command (Ctrl-C's cousin, a scheduler's kill) must not leave that fit training alone."""
    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
    train = subprocess.Popen([PROFNER, "train", "smoke_rnn", "--out", str(work / "model"),
                              "--jobs", "2", "--no-progress", "--set", "data.train_on_dev=true",
                              "--set", "training.epochs=500"],
                             env=clean_env(home), cwd=work, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and train.poll() is None and not tree:
            tree = descendants(train.pid)
            time.sleep(0.5)
        assert tree and train.poll() is None, "no held-out fit process was started"
        time.sleep(3)  # the worker imports, then starts its watch
        train.terminate()
        train.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(tree), f"left running: {alive(tree)}"
    finally:
        if train.poll() is None:
            train.kill()
        for pid in alive(tree):
            subprocess.run(["kill", "-9", str(pid)], check=False)
