"""``profner serve``: a real Ray Serve endpoint on a free loopback port, queried over HTTP.

One server, ``profner serve runs:/<id>/model --detach`` (an MLflow run in a sqlite store),
answers the API tests; it is shared with test_serve_fuzz.py, which ends the session by
stopping it with ``profner serve --stop`` and checking that nothing is left (see
serve_support.shared_server). Answers are compared with in-process ``Predictor`` answers.
"""

from __future__ import annotations

import json
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from serve_support import (
    MAX_BATCH,
    MAX_CHARS,
    MAX_TEXTS,
    REPO,
    SMOKE_CONFIG,
    free_port,
    get,
    mlflow_run,
    post_json,
    request,
    shared_server,
    tiny_model,
)

from serve.schemas import CONTENT

pytestmark = pytest.mark.slow

@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def predictor(model_dir):
    from profner_models.predict import Predictor

    return Predictor(model_dir)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = shared_server(tmp_path_factory.getbasetemp())
    yield process
    process.close()


@pytest.fixture(scope="session")
def tweets() -> list[str]:
    """Sample tweets that hold gold mentions, dressed in emoji (ZWJ sequences, skin tones,
    flags), precomposed and combining accents, and ñ, so offsets cross multi-unit characters."""
    from profner_models.training import load_task_data

    config = yaml.safe_load(SMOKE_CONFIG.read_text(encoding="utf-8"))
    train, _dev = load_task_data(config, None)
    with_spans = [doc.text for doc in train if doc.spans][:12]
    dressings = ["👩🏽‍⚕️🇪🇸 {} 😷", "¡Qué día! {} — ñandú, café, acción", "{} 👨‍👩‍👧‍👦 e\u0301xito",
                 "🏥🏥🏥{}🙏🏻"]
    return [dressings[i % len(dressings)].format(text) for i, text in enumerate(with_spans)]


def in_process(predictor, texts: list[str]) -> list[dict]:
    return [p.to_dict() for p in predictor.predict(texts)]


def test_offsets_with_emoji_and_accents_match_in_process(server, predictor, tweets):
    texts = tweets[:MAX_TEXTS]
    status, answer = post_json(server.url + "/predict", {"texts": texts})
    assert status == 200, answer
    assert answer["predictions"] == in_process(predictor, texts)
    entities = [(text, e) for text, p in zip(texts, answer["predictions"]) for e in p["entities"]]
    assert entities, "the tiny model tagged nothing: the offset check would be empty"
    for text, entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["text"]
    assert any(not text.isascii() and text.index(e["text"]) > 0 for text, e in entities)

    status, single = post_json(server.url + "/predict", {"text": texts[0]})
    assert status == 200 and single["predictions"] == in_process(predictor, texts[:1])


def test_decomposed_and_precomposed_accents_keep_their_own_offsets(server, predictor):
    precomposed = "La médica llegó al hospital 🏥 y la enfermera también"
    decomposed = unicodedata.normalize("NFD", precomposed)
    assert len(decomposed) > len(precomposed)
    status, answer = post_json(server.url + "/predict", {"texts": [precomposed, decomposed]})
    assert status == 200
    assert answer["predictions"] == in_process(predictor, [precomposed, decomposed])
    for text, prediction in zip([precomposed, decomposed], answer["predictions"]):
        for entity in prediction["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["text"]


def test_profner_predict_gives_the_same_answers(server, tweets, model_dir, tmp_path):
    from profner_models.cli.main import main

    folder = tmp_path / "in"
    folder.mkdir()
    texts = tweets[:MAX_TEXTS]
    for index, text in enumerate(texts):
        (folder / f"{index}.txt").write_bytes(text.encode("utf-8"))
    assert main(["predict", "--model", str(model_dir), "--input", str(folder),
                 "--out-7a", str(tmp_path / "7a.tsv"), "--out-7b", str(tmp_path / "7b.tsv")]) == 0
    labels = dict(line.split("\t") for line in (tmp_path / "7a.tsv").read_text("utf-8").splitlines()[1:])
    spans = {(row[0], int(row[1]), int(row[2]), row[3])
             for row in (line.split("\t") for line in (tmp_path / "7b.tsv").read_text("utf-8").splitlines()[1:])
             if row[1] != "-"}

    status, answer = post_json(server.url + "/predict", {"texts": texts})
    assert status == 200
    assert {str(i): str(p["label"]) for i, p in enumerate(answer["predictions"])} == labels
    assert {(str(i), e["start"], e["end"], e["type"])
            for i, p in enumerate(answer["predictions"]) for e in p["entities"]} == spans


def test_health_model_and_docs(server, model_dir, tmp_path_factory):
    _tracking_uri, run_id = mlflow_run(tmp_path_factory.getbasetemp())
    status, health = get(server.url + "/health")
    assert status == 200 and health["status"] == "ready"

    status, info = get(server.url + "/model")
    assert status == 200
    assert info["ref"] == f"runs:/{run_id}/model" and health["model_dir"] == info["model_dir"]
    assert info["source"]["kind"] == "mlflow-run" and info["source"]["run_id"] == run_id
    assert info["source"]["tags"]["trial_id"] == "abc_00000"
    meta = json.loads((model_dir / "meta.json").read_text("utf-8"))
    assert info["meta"] == meta and info["metrics"] == meta["metrics"] and info["metrics"]
    assert info["config"] == json.loads((model_dir / "config.json").read_text("utf-8"))
    assert info["device"] == "cpu"  # no --num-gpus
    assert info["task"] == "profner"
    assert info["limits"] == {"max_texts": MAX_TEXTS, "max_chars": MAX_CHARS}
    assert info["batching"]["max_batch_size"] == MAX_BATCH
    assert info["versions"]["ray"] == "2.60.0"

    status, spec = get(server.url + "/openapi.json")
    assert status == 200
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    one, several = body["schema"]["oneOf"]  # exactly one of text / texts, with live limits
    assert (one["required"], several["required"]) == (["text"], ["texts"])
    text = one["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, MAX_CHARS)
    assert several["properties"]["texts"]["maxItems"] == MAX_TEXTS
    assert several["properties"]["texts"]["items"] == text and text["pattern"] == CONTENT
    assert {"400", "413", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert get(server.url + "/docs")[0] == 200


BAD_BODIES = [
    (b"", 400, "empty"),
    (b"   \n", 400, "empty"),
    (b'{"texts": ["ok"', 400, "malformed JSON at line 1"),
    (b'{"texts": ["caf\xe9"]}', 400, "not valid UTF-8"),
    (b"\xff\xfe{}", 400, "not valid UTF-8"),
    (b'{"texts":' + b"[" * 20000 + b"]" * 20000 + b"}", 400, "nested too deeply"),
    (b"[1, 2]", 422, "must be a JSON object"),
    (b'"just a string"', 422, "must be a JSON object"),
    (b"{}", 422, "exactly one of 'text'"),
    (b'{"text": "a", "texts": ["b"]}', 422, "exactly one of 'text'"),
    (b'{"texts": []}', 422, "texts: List should have at least 1 item"),
    (b'{"texts": "not a list"}', 422, "texts: Input should be a valid list"),
    (b'{"texts": ["ok", 3]}', 422, "texts[1]: Input should be a valid string"),
    (b'{"texts": ["ok", null]}', 422, "texts[1]: Input should be a valid string"),
    (b'{"texts": [["nested"]]}', 422, "texts[0]: Input should be a valid string"),
    (b'{"text": 12}', 422, "text: Input should be a valid string"),
    (b'{"textos": ["hola"]}', 422, "textos: unknown field"),
    (b'{"texts": ["ok", ""]}', 422, "texts[1] has no content"),
    (b'{"text": " \\t\\n\\u3000"}', 422, "text has no content"),
    (b'{"text": "abc\\ud800"}', 422, "unpaired surrogate U+D800 at character 3"),
    (b'{"text": "\\u200b"}', 422, "text has no content"),  # zero-width space
    (b'{"text": "\\ufeff"}', 422, "text has no content"),  # BOM
    (b'{"text": "\\u0000"}', 422, "text has no content"),  # NUL
    (b'{"texts": ["ok", "\\u200e\\u0007 \\u2066"]}', 422, "texts[1] has no content"),
]


@pytest.mark.parametrize("body,status,message", BAD_BODIES,
                         ids=[f"{s}-{m.split()[0]}-{i}" for i, (_b, s, m) in enumerate(BAD_BODIES)])
def test_bad_bodies_get_a_clear_4xx(server, body, status, message):
    got, answer = request(server.url + "/predict", body)
    assert (got, message in answer["detail"]) == (status, True), answer


def test_size_limits_answer_413_naming_the_limit(server, predictor):
    over_texts = {"texts": ["hola"] * (MAX_TEXTS + 1)}
    status, answer = post_json(server.url + "/predict", over_texts)
    assert status == 413 and f"max_texts={MAX_TEXTS}" in answer["detail"]

    status, answer = post_json(server.url + "/predict", {"texts": ["ok", "é" * (MAX_CHARS + 1)]})
    assert status == 413 and f"texts[1] has {MAX_CHARS + 1} characters" in answer["detail"]
    assert f"max_chars={MAX_CHARS}" in answer["detail"]

    huge = json.dumps({"text": "x" * 10_000_000}).encode()
    status, answer = request(server.url + "/predict", huge)
    assert status == 413 and "bytes; the limit is" in answer["detail"]

    at_limits = ["🙂" + "ñ" * (MAX_CHARS - 1)] * MAX_TEXTS  # characters, not bytes, are counted
    status, answer = post_json(server.url + "/predict", {"texts": at_limits})
    assert status == 200 and answer["predictions"] == in_process(predictor, at_limits)


def test_wrong_method_and_path(server):
    assert get(server.url + "/predict")[0] == 405
    assert get(server.url + "/nothing-here")[0] == 404


def test_200_concurrent_requests_all_answered(server, predictor, tweets):
    texts = [f"{tweets[i % len(tweets)]} #{i}" for i in range(200)]
    expected = in_process(predictor, texts)

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda text: post_json(server.url + "/predict", {"text": text}),
                                texts))
    assert [status for status, _ in answers] == [200] * 200
    for (_, answer), want in zip(answers, expected):
        got = answer["predictions"][0]
        # Batches mix texts of concurrent requests, so float sums may differ in the last bits.
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-5)
        assert (got["label"], got["entities"]) == (want["label"], want["entities"])


def test_resolve_mlflow_references(model_dir, tmp_path_factory, tmp_path):
    from serve.resolve import ModelRefError, resolve

    tracking_uri, run_id = mlflow_run(tmp_path_factory.getbasetemp())
    by_run = resolve(f"runs:/{run_id}/model", tracking_uri)
    assert (by_run.model_dir / "meta.json").read_bytes() == (model_dir / "meta.json").read_bytes()
    assert by_run.source["run_id"] == run_id and by_run.source["tags"]["trial_id"] == "abc_00000"
    by_version = resolve("models:/profner-tiny/1", tracking_uri)
    assert (by_version.model_dir / "model.safetensors").read_bytes() == \
        (model_dir / "model.safetensors").read_bytes()
    assert by_version.source["run_id"] == run_id and by_version.source["version"] == "1"
    for bad in ("runs:/0123456789abcdef/model", "models:/no-such-model/1", "s3://bucket/x",
                str(tmp_path / "missing"), str(model_dir / "meta.json")):
        with pytest.raises(ModelRefError, match="model reference"):
            resolve(bad, tracking_uri)


def test_bad_model_ref_fails_fast_without_ray(tmp_path, capsys):
    from profner_models.cli.main import main

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json", encoding="utf-8")
    for ref, message in ((str(tmp_path / "missing"), "does not exist"),
                         (str(broken), "meta.json: not valid JSON"),
                         ("runs:/", "expected runs:/<run_id>/<artifact_path>")):
        assert main(["serve", ref, "--port", str(free_port())]) == 2
        assert message in capsys.readouterr().err
    assert main(["serve"]) == 2 and "MODEL_REF is required" in capsys.readouterr().err


def test_stop_without_a_server(tmp_path, monkeypatch, capsys):
    from profner_models.cli.main import main

    monkeypatch.setenv("PROFNER_SERVE_STATE_DIR", str(tmp_path))
    (tmp_path / "9.json").write_text(json.dumps(  # a server that died without cleaning up
        {"port": 9, "pid": 2**22 + 1, "url": "http://127.0.0.1:9", "model": "x", "started": 1}))
    assert main(["serve", "--stop"]) == 0
    assert "no running server" in capsys.readouterr().out
    assert not (tmp_path / "9.json").exists()


def test_a_port_held_by_a_listener_or_only_by_time_wait():
    """A listener is "in use" at once; a port held only by the TIME_WAIT of a connection the
    server closed (Serve's direct-ingress replica binds without SO_REUSEADDR) is waited for,
    then named. ``stop`` waits for the listener to go, not for the TIME_WAIT's 60 s."""
    import socket
    import time

    from serve import runner

    listener = socket.socket()  # no SO_REUSEADDR, as Serve's replica binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first: its end of the connection waits in TIME_WAIT
    client.close()
    listener.close()
    time.sleep(0.2)
    assert runner.held_by_time_wait("127.0.0.1", port)
    started = time.monotonic()
    with pytest.raises(OSError, match="TIME_WAIT.*choose another --port"):
        runner.ensure_port_free("127.0.0.1", port, wait_s=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        with pytest.raises(OSError, match=f"port {taken} on 127.0.0.1 is already in use"):
            runner.ensure_port_free("127.0.0.1", taken)


def test_the_readiness_probe_leaves_no_time_wait_on_the_servers_port():
    """``wait_ready`` closes its connection first, so a server it probed can be restarted on
    the same port at once (urllib's ``Connection: close`` made the server close first)."""
    import socket
    import threading

    from serve import runner

    listener = socket.socket()  # no SO_REUSEADDR, as Serve's replica binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def answer_once() -> None:  # as uvicorn does: close first only when asked to
        connection, _ = listener.accept()
        asked_to_close = b"connection: close" in connection.recv(4096).lower()
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if not asked_to_close:
            connection.recv(4096)  # b"": the client closed first
        connection.close()

    server = threading.Thread(target=answer_once)
    server.start()
    runner.wait_ready(f"http://127.0.0.1:{port}", timeout_s=10)
    server.join(10)
    listener.close()
    assert not runner.port_in_use("127.0.0.1", port)


def test_serve_config_yaml_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import ServeSettings

    config = yaml.safe_load((REPO / "serve" / "serve_config.yaml").read_text(encoding="utf-8"))
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "serve.app:build_app"
    assert ServeSettings.model_validate(app.args).max_batch_size >= 1
    assert schema.http_options.host == "127.0.0.1"


def test_answers_say_where_the_time_went(server):
    """``Server-Timing``: parse, batch-queue wait, model and replica total, in ms."""
    import urllib.request

    call = urllib.request.Request(server.url + "/predict", data=b'{"text": "Soy enfermera"}',
                                  headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(call, timeout=60) as answer:
        header = answer.headers["Server-Timing"]
    timing = {name: float(dur.split("=")[1]) for name, dur in
              (part.strip().split(";") for part in header.split(","))}
    assert list(timing) == ["parse", "wait", "model", "replica"]
    assert all(value >= 0 for value in timing.values())
    assert timing["replica"] >= timing["model"] and timing["replica"] >= timing["parse"]


def test_the_access_log_is_off_unless_asked_and_a_detached_child_keeps_the_choice():
    import argparse

    from serve import cli
    from serve.app import build_app

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    quiet = parser.parse_args(["serve", "m"])
    loud = parser.parse_args(["serve", "m", "--access-log", "--port", "8123"])
    assert quiet.access_log is False and loud.access_log is True
    assert "--no-access-log" in cli._replay(quiet, 8000)
    replayed = parser.parse_args(cli._replay(loud, 8123))
    assert replayed.access_log is True and replayed.port == 8123
    for flag in (False, True):
        deployment = build_app({"model": "m", "access_log": flag})._bound_deployment
        assert deployment._deployment_config.logging_config["enable_access_log"] is flag
