"""Hostile and malformed ``POST /predict`` bodies against a real ``profner serve`` process.

A few hundred seeded cases: random bytes, wrong JSON types, deep nesting, invalid UTF-8,
lone surrogates, bodies and texts over the limits, empty/whitespace-only/emoji-only texts,
random Unicode. Each case knows its answer: an exact status (or "some 4xx" for random bytes),
and for 200s the in-process predictions. The server process must outlive them all and answer
a valid request correctly afterwards; then ``profner serve --stop`` must stop it cleanly. The
server is the one test_serve.py uses (see serve_support.shared_server).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_support import (
    MAX_CHARS,
    MAX_TEXTS,
    alive,
    descendants,
    get,
    post_json,
    request,
    shared_server,
    tiny_model,
)

from serve.schemas import Limits

pytestmark = pytest.mark.slow

MAX_BODY = Limits(max_texts=MAX_TEXTS, max_chars=MAX_CHARS).max_body_bytes
SEED = 20261129
ANY_4XX = 0

EMOJI = ["😀", "👩🏽‍⚕️", "🇪🇸", "👨‍👩‍👧‍👦", "🙏🏻", "🏥", "❤️", "🧑‍🍳", "👷‍♀️", "🤷🏾‍♂️", "🔥", "🐧"]
SPACES = [" ", "\t", "\n", "\r", "\u3000", "\u00a0", "\u2003", "\u2028", "\u000b", "\u000c"]
WORDS = ["enfermera", "médico", "camionero", "parado", "autónomo", "niño", "España", "pingüino",
         "café", "acción", "e\u0301xito", "ÑANDÚ", "#Sanitarios", "@policía", "100€", "Ωμέγα"]


@dataclass
class Case:
    kind: str
    body: bytes
    status: int  # ANY_4XX: any 400..499
    texts: list[str] | None = None  # the texts a 200 answers for
    content_type: str | None = "application/json"


def _random_unicode(rng: random.Random, length: int) -> str:
    blocks = [(0x20, 0x7E), (0xA1, 0x17F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF),
              (0x1F300, 0x1F64F), (0x0300, 0x036F), (0x200B, 0x200F)]
    chars = []
    for _ in range(length):
        low, high = rng.choice(blocks)
        chars.append(chr(rng.randint(low, high)))
    return "x" + "".join(chars)  # never blank


def _random_json(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(7 if depth < 3 else 4)
    if choice == 0:
        return rng.randint(-10**6, 10**6)
    if choice == 1:
        return rng.random() * 1e6
    if choice == 2:
        return rng.choice([True, False, None])
    if choice == 3:
        return {"k": 1, "x": "y"}
    if choice == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if choice == 5:
        return {_random_unicode(rng, 3): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [1, "mixed", None]


def _wrong_texts(rng: random.Random) -> object:
    """A ``texts`` value that is never a list of strings."""
    value = _random_json(rng)
    if isinstance(value, list):
        value = [*value, rng.choice([1, None, 2.5, [], {}])]
    return value


def _cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    dump = lambda value: json.dumps(value).encode("utf-8")  # noqa: E731
    for _ in range(30):
        add(Case("random bytes", bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
                 ANY_4XX))
    for _ in range(25):
        add(Case("wrong type: texts", dump({"texts": _wrong_texts(rng)}), 422))
    for _ in range(15):
        add(Case("wrong type: text", dump({"text": rng.choice([1, 2.5, True, None, [], {}, ["a"]])}),
                 422))
    for _ in range(15):
        add(Case("not an object", dump(rng.choice([[], ["a"], "a", 1, None, True, 2.5])), 422))
    for _ in range(10):
        add(Case("unknown/both keys", dump(rng.choice([
            {"text": "a", "texts": ["b"]}, {}, {"txt": "a"}, {"texts": ["a"], "lang": "es"},
            {_random_unicode(rng, 2000): "a"}])), 422))
    for _ in range(20):
        depth = rng.choice([50, 500, 3000, 30000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        body = b'{"texts": ' + (opener * depth + "1" + closer * depth).encode() + b"}"
        add(Case("deep nesting", body, 413 if len(body) > MAX_BODY else 400 if depth > 900 else 422))
    for _ in range(20):
        invalid = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
        add(Case("invalid UTF-8", b'{"text": "hola ' + invalid + b' mundo"}', 400))
    for _ in range(20):
        valid = dump({"texts": ["Soy enfermera", "y tú?"]})
        add(Case("truncated JSON", valid[:rng.randint(1, len(valid) - 1)], 400))
    for _ in range(20):
        add(Case("text over max_chars",
                 dump({"text": rng.choice(WORDS) * (MAX_CHARS // 3 + rng.randint(1, 300))}), 413))
    for _ in range(10):
        add(Case("body over limit", dump({"text": "a" * rng.randint(MAX_BODY + 1, 2_000_000)}), 413))
    for _ in range(15):
        add(Case("too many texts", dump({"texts": ["hola"] * rng.randint(MAX_TEXTS + 1, 500)}), 413))
    for _ in range(20):
        blank = "".join(rng.choice(SPACES) for _ in range(rng.randint(0, 12)))
        texts = [rng.choice(WORDS) for _ in range(rng.randint(0, MAX_TEXTS - 1))]
        texts.insert(rng.randint(0, len(texts)), blank)
        add(Case("empty/whitespace-only", dump({"texts": texts}), 422))
    for _ in range(15):
        surrogate = f"\\u{rng.randint(0xD800, 0xDFFF):04x}"
        add(Case("lone surrogate", f'{{"text": "hola {surrogate} mundo"}}'.encode(), 422))
    for _ in range(10):
        add(Case("NaN/Infinity", rng.choice([b'{"text": NaN}', b'{"texts": [Infinity]}',
                                             b'{"text": -Infinity}']), 422))
    for _ in range(25):
        texts = ["".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 8)))
                 for _ in range(rng.randint(1, MAX_TEXTS))]
        add(Case("emoji-only", dump({"texts": texts}), 200, texts))
    for _ in range(25):
        texts = [_random_unicode(rng, rng.randint(1, MAX_CHARS - 1)) for _ in range(rng.randint(1, MAX_TEXTS))]
        add(Case("random Unicode", json.dumps({"texts": texts}, ensure_ascii=rng.random() < 0.5)
                 .encode("utf-8"), 200, texts))
    for _ in range(10):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20)))
        add(Case("content type ignored", dump({"text": text}), 200, [text],
                 rng.choice(["text/plain", None, "application/x-www-form-urlencoded"])))
    return cases


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    process = shared_server(tmp_path_factory.getbasetemp())
    yield process
    process.close()


def test_hostile_bodies_get_4xx_or_a_correct_200_and_the_server_survives(server, model_dir):
    from profner_models.predict import Predictor

    cases = _cases(random.Random(SEED))
    assert len(cases) >= 300
    predictor = Predictor(model_dir)

    def send(case: Case) -> tuple[int, object]:
        return request(server.url + "/predict", case.body, case.content_type, method="POST")

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, cases))

    wrong = []
    for case, (status, answer) in zip(cases, answers):
        if case.status == ANY_4XX:
            ok = 400 <= status < 500 and isinstance(answer, dict) and "detail" in answer
        elif case.status == 200:
            expected = [p.to_dict() for p in predictor.predict(case.texts)]
            ok = status == 200 and _same(answer["predictions"], expected)
        else:
            ok = status == case.status and isinstance(answer, dict) and answer.get("detail")
        if not ok:
            wrong.append((case.kind, case.body[:80], status, str(answer)[:200]))
    assert wrong == [], f"{len(wrong)} wrong answers, e.g. {wrong[:5]}"
    assert Counter(status for status, _ in answers).keys() <= {200, 400, 413, 422}

    assert server.running(), server.log()
    text = "Mi hermana es enfermera 👩‍⚕️ en Zaragoza"
    status, answer = post_json(server.url + "/predict", {"text": text})
    assert status == 200 and _same(answer["predictions"], [p.to_dict() for p in predictor.predict([text])])
    assert get(server.url + "/health")[0] == 200


def _same(got: list[dict], expected: list[dict]) -> bool:
    """Equal answers; probabilities to 1e-5, as batches mix concurrent requests' texts."""
    return len(got) == len(expected) and all(
        g["label"] == e["label"] and g["entities"] == e["entities"]
        and abs(g["probability"] - e["probability"]) <= 1e-5 for g, e in zip(got, expected))


def test_schemathesis_finds_no_failure_of_any_check(server, tmp_path):
    """Schemathesis (examples, coverage and fuzzing phases, all checks, a bounded number of
    cases per operation) against the live schema: no server error, every answer as documented,
    every schema-valid body accepted and every schema-invalid one refused (413 counts as a
    refusal: tests/schemathesis.toml)."""
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(cli), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
         "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "40",
         "--workers", "2", "--seed", str(SEED), "--generation-database", "none",
         "--request-timeout", "30", "--phases", "examples,coverage,fuzzing", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
    assert server.running(), server.log()


def test_stop_shuts_down_and_frees_everything(server):
    """After the fuzzing: ``profner serve --stop`` Ctrl-Cs the detached server; Serve and Ray
    shut down in order, no process is left, nothing listens on the port and the record is
    gone."""
    from serve.runner import listening

    below = descendants(server.pid) | {server.pid}
    assert len(below) > 3 and server.state.is_file()
    stopped = server.stop()
    assert stopped.returncode == 0 and f"stopped {server.url}" in stopped.stdout, stopped.stderr
    assert alive(below) == set(), server.log()
    assert not listening("127.0.0.1", server.port) and not server.state.exists()
    assert "profner serve: stopped" in server.log()

