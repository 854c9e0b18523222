"""Soak test of ``profner serve``: N minutes of mixed real and hostile traffic at concurrency 16.

    .venv/bin/python bench/soak.py [--model MODEL_DIR] [--data CORPUS] [--minutes 10] [--json]

The server runs as ``bench/serving.py`` starts it (private local Ray, one replica, loopback).
Each of ``--concurrency`` client threads sends, back to back, a request drawn from a fixed
mix (``MIX``): mostly one real tweet (``--data``: a ProfNER corpus; default the bundled
sample), some batches of 16 tweets, and hostile bodies: 10,000 characters of ``!`` or of
random symbols without a space, a text of only invisible characters, malformed JSON, a text
over ``max_chars`` or more texts than ``max_texts``, JSON nested too deeply. Each kind has the statuses it may answer
(``EXPECTED``); anything else, or a connection error, counts as an error. Every minute (and at
the end) it prints requests/s, p50/p99 of the single-tweet requests, answers by status, errors,
and the RSS of the replica and proxy processes: a leak shows as RSS growing minute by minute,
a stall as p99 jumping.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
from serving import percentiles, sample_tweets, train_smoke_model
from stats import percentile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MIX = {"tweet": 80, "batch16": 8, "bang10k": 3, "symbols10k": 3, "invisible": 2,
       "bad_json": 2, "too_large": 1, "deep_json": 1}
EXPECTED = {"tweet": {200}, "batch16": {200}, "bang10k": {200, 504}, "symbols10k": {200, 504},
            "invisible": {422}, "bad_json": {400}, "too_large": {413}, "deep_json": {400, 422}}
SYMBOLS = "!?¡¿.,;:-_()[]{}#@$%&*+=/\\|<>~^`'\"😷🙏🏻👩‍⚕️"


def bodies(tweets: list[str], seed: int = 0) -> dict[str, list[bytes]]:
    """A few prepared bodies per kind (so building them costs the clients nothing)."""
    rng = random.Random(seed)
    as_json = lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8")  # noqa: E731
    return {
        "tweet": [as_json({"text": t}) for t in tweets],
        "batch16": [as_json({"texts": rng.sample(tweets, min(16, len(tweets)))}) for _ in range(8)],
        "bang10k": [as_json({"text": "!" * 10_000})],
        "symbols10k": [as_json({"text": "".join(rng.choice(SYMBOLS) for _ in range(10_000))})
                       for _ in range(4)],
        "invisible": [as_json({"text": "\u200b\ufeff\u200b"}), as_json({"texts": ["\u0000"]})],
        "bad_json": [b'{"text": "sin cerrar', b"\xff\xfe not utf-8", b""],
        "too_large": [as_json({"text": "a" * 10_001}), as_json({"texts": ["hola"] * 65})],
        "deep_json": [b'{"text": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"],
    }


class Tally:
    """What the clients saw in the current minute and in all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.minute: list[tuple[str, int, float]] = []
        self.total: Counter = Counter()
        self.errors: Counter = Counter()
        self.tweet_latencies: list[float] = []

    def add(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.minute.append((kind, status, seconds))
            self.total[kind] += 1
            if status not in EXPECTED[kind]:
                self.errors[f"{kind}:{status}"] += 1
            if kind == "tweet" and status == 200:
                self.tweet_latencies.append(seconds)

    def take_minute(self) -> list[tuple[str, int, float]]:
        with self.lock:
            rows, self.minute = self.minute, []
        return rows


def client(port: int, prepared: dict[str, list[bytes]], tally: Tally, stop_at: float,
           seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < stop_at:
        kind = rng.choices(kinds, weights)[0]
        body = rng.choice(prepared[kind])
        started = time.perf_counter()
        try:
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            status = -1  # a connection error: counted, then a fresh connection
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        tally.add(kind, status, time.perf_counter() - started)
    connection.close()


def serve_rss_mb() -> dict[str, float]:
    """RSS of this machine's Serve replica and proxy processes, MB."""
    found: dict[str, float] = {}
    for proc in psutil.process_iter(["name", "cmdline", "memory_info"]):
        title = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
        for role, marker in (("replica", "ServeReplica"), ("proxy", "ProxyActor")):
            if marker in title and proc.info["memory_info"] is not None:
                found[role] = round(found.get(role, 0) + proc.info["memory_info"].rss / 2**20, 1)
    return found


def minute_line(index: int, rows: list[tuple[str, int, float]], seconds: float) -> dict:
    tweets = [s for kind, status, s in rows if kind == "tweet" and status == 200]
    statuses = Counter(status for _, status, _ in rows)
    errors = sum(1 for kind, status, _ in rows if status not in EXPECTED[kind])
    return {"minute": index, "requests": len(rows), "requests_per_s": round(len(rows) / seconds, 1),
            "tweet_ms": tweet_ms(tweets), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": errors, "rss_mb": serve_rss_mb()}


def tweet_ms(seconds: list[float]) -> dict | None:
    """p50 / p95 / p99 in ms of the single-tweet answers."""
    if not seconds:
        return None
    return {**percentiles(seconds), "p99": round(1000 * percentile(seconds, 99), 2)}


def corpus_tweets(data: Path | None) -> list[str]:
    if data is None:
        return sample_tweets()
    from profner_models.corpus import load_corpus

    docs, _ = load_corpus(data, "train")
    return [doc.text for doc in docs[:2000]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model dir (default: train a smoke model)")
    parser.add_argument("--data", type=Path, help="ProfNER corpus for the real tweets")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--request-timeout-s", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)

    from serve import runner
    from serve.schemas import ServeSettings

    scratch = Path(tempfile.mkdtemp(prefix="pfs", dir="/tmp"))
    stdout = os.dup(1)
    os.dup2(2, 1)  # Ray prints on fd 1: keep stdout for the figures
    out = os.fdopen(stdout, "w", buffering=1)
    try:
        model_dir = args.model or train_smoke_model(scratch / "model", quiet=args.json)
        prepared = bodies(corpus_tweets(args.data))
        port = runner.free_port("127.0.0.1")
        runner.start(ServeSettings(model=str(model_dir), request_timeout_s=args.request_timeout_s),
                     "127.0.0.1", port, ray_temp_dir=str(scratch / "ray"))
        tally = Tally()
        started = time.monotonic()
        stop_at = started + 60 * args.minutes
        threads = [threading.Thread(target=client, args=(port, prepared, tally, stop_at, seed),
                                    daemon=True) for seed in range(args.concurrency)]
        for thread in threads:
            thread.start()
        minute, last = 0, started
        while any(thread.is_alive() for thread in threads):
            time.sleep(max(0.0, min(60.0, stop_at - time.monotonic())))
            if time.monotonic() >= stop_at:
                for thread in threads:  # each finishes the request it is in
                    thread.join()
            now = time.monotonic()
            minute += 1
            line = minute_line(minute, tally.take_minute(), now - last)
            last = now
            print(json.dumps(line) if args.json else _format(line), file=out)
        summary = {"summary": True, "minutes": round((time.monotonic() - started) / 60, 2),
                   "concurrency": args.concurrency, "requests": dict(tally.total),
                   "errors": dict(tally.errors), "tweet_ms": tweet_ms(tally.tweet_latencies),
                   "rss_mb": serve_rss_mb()}
        print(json.dumps(summary), file=out)
    finally:
        runner.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if tally.errors else 0


def _format(line: dict) -> str:
    tweet = line["tweet_ms"] or {}
    return (f"minute {line['minute']:>3}: {line['requests_per_s']:>7} req/s  tweet p50 "
            f"{tweet.get('p50')} ms p99 {tweet.get('p99')} ms  errors {line['errors']}  "
            f"statuses {line['statuses']}  RSS MB {line['rss_mb']}")


if __name__ == "__main__":
    sys.exit(main())
