"""HTTP serving figures for ``profner serve``: latency of one tweet, throughput at concurrency
1/8/32 with and without server-side batching, against in-process ``Predictor`` prediction.

    .venv/bin/python bench/serve.py [--model MODEL_DIR] [--quick] [--json]

Without ``--model`` a small model is trained on the bundled sample first (smoke config). The
server runs on a private local Ray instance on a free loopback port (one replica, 1 CPU); the
clients are threads of this process with keep-alive connections, one request = one tweet, so
on a small machine they compete with the server for the same cores (reported as ``cpus``).
Ratios are HTTP requests/s over in-process single-text predictions/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from profner_models import artifacts

REPO = Path(__file__).resolve().parents[1]
# This file is named serve.py: drop its folder from the path so that `serve` (here and in the
# Ray workers, which get the driver's script folder) is the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONCURRENCY = (1, 8, 32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model dir (default: train a smoke model)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (under 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--max-batch-size", type=int, default=16, help="the batching run's size")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as a 1-CPU replica runs (Ray sets OMP_NUM_THREADS=1)
    scratch = Path(tempfile.mkdtemp(prefix="pfb", dir="/tmp"))  # short: Ray socket paths
    stdout = os.dup(1)
    os.dup2(2, 1)  # Ray prints its own messages on fd 1: keep stdout for the figures
    try:
        model_dir = args.model or _train_smoke_model(scratch / "model", quiet=args.json)
        tweets = _tweets()
        seconds = 3.0 if args.quick else 10.0
        sequential = 60 if args.quick else 300
        result = {"model": str(model_dir), "cpus": os.cpu_count(), "quick": args.quick,
                  "seconds_per_level": seconds,
                  "in_process": _in_process(model_dir, tweets, sequential)}
        result["http"] = _http(model_dir, tweets, scratch, seconds, sequential,
                               args.max_batch_size, args.batch_wait_ms, quiet=args.json)
        single = result["in_process"]["single_text_per_s"]
        for run in result["http"].values():
            for level in run["throughput"].values():
                level["ratio_to_in_process"] = round(level["requests_per_s"] / single, 3)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(result) if args.json else _table(result))
    return 0


def _train_smoke_model(model_dir: Path, quiet: bool) -> Path:
    import yaml

    from profner_models.training import fit, load_task_data

    if not quiet:
        print("training a smoke model on the bundled sample ...", file=sys.stderr)
    config = yaml.safe_load((REPO / "profner_models/configs/smoke_rnn.yaml").read_text("utf-8"))
    train, dev = load_task_data(config, None)
    artifacts.save(fit(config, train, dev, progress=False).model, model_dir)
    return model_dir


def _tweets() -> list[str]:
    from profner_models.sample import PROFNER_SAMPLE

    folder = PROFNER_SAMPLE / "subtask-2" / "brat" / "valid"
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))][:64]


def _in_process(model_dir: Path, tweets: list[str], count: int) -> dict:
    from profner_models.predict import Predictor

    predictor = Predictor(model_dir)
    predictor.predict(tweets[:4])
    times = []
    for i in range(count):
        started = time.perf_counter()
        predictor.predict([tweets[i % len(tweets)]])
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    rounds = max(1, count // 16)
    for _ in range(rounds):
        predictor.predict(tweets[:32])
    batched = 32 * rounds / (time.perf_counter() - started)
    return {"latency_ms": _percentiles(times), "single_text_per_s": round(1 / statistics.mean(times), 1),
            "batch32_texts_per_s": round(batched, 1)}


def _http(model_dir: Path, tweets: list[str], scratch: Path, seconds: float, sequential: int,
          max_batch_size: int, batch_wait_ms: float, quiet: bool) -> dict:
    from serve import runner
    from serve.schemas import ServeSettings

    port = _free_port()
    runs = {"batching": ServeSettings(model=str(model_dir), max_batch_size=max_batch_size,
                                      batch_wait_ms=batch_wait_ms),
            "no_batching": ServeSettings(model=str(model_dir), max_batch_size=1)}
    bodies = [json.dumps({"text": t}).encode("utf-8") for t in tweets]
    out = {}
    try:
        for name, settings in runs.items():
            if not quiet:
                print(f"deploying ({name}) ...", file=sys.stderr)
            if not out:
                runner.start(settings, "127.0.0.1", port, ray_temp_dir=str(scratch / "ray"))
            else:
                runner.deploy(settings, f"http://127.0.0.1:{port}")
            _check_deployed(port, settings.max_batch_size)
            _load(port, bodies, 1, 1.0)  # warm-up
            latencies = _sequential(port, bodies, sequential)
            out[name] = {"max_batch_size": settings.max_batch_size,
                         "batch_wait_ms": settings.batch_wait_ms,
                         "latency_ms": _percentiles(latencies),
                         "throughput": {str(c): _load(port, bodies, c, seconds) for c in CONCURRENCY}}
    finally:
        runner.stop()
    return out


def _check_deployed(port: int, max_batch_size: int) -> None:
    """Wait until every answer comes from the replica of the new settings."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/model")
        info = json.loads(connection.getresponse().read())
        connection.close()
        if info["batching"]["max_batch_size"] == max_batch_size:
            return
        time.sleep(0.5)
    raise TimeoutError("the redeployed app did not take over")


def _post(connection: http.client.HTTPConnection, body: bytes) -> float:
    started = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        raise RuntimeError(f"POST /predict answered {answer.status}")
    return time.perf_counter() - started


def _sequential(port: int, bodies: list[bytes], count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        return [_post(connection, bodies[i % len(bodies)]) for i in range(count)]
    finally:
        connection.close()


def _load(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients posting back to back for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, i = [], offset
        while time.perf_counter() < stop_at:
            mine.append(_post(connection, bodies[i % len(bodies)]))
            i += concurrency
        connection.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": _percentiles(latencies)}


def _percentiles(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "n": len(ordered)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _table(result: dict) -> str:
    lines = [f"model {result['model']}  ({result['cpus']} CPUs, clients on the same machine)",
             "in-process Predictor, one tweet: p50 {p50} ms  p95 {p95} ms".format(
                 **result["in_process"]["latency_ms"])
             + f"  -> {result['in_process']['single_text_per_s']} texts/s "
             f"(batch of 32: {result['in_process']['batch32_texts_per_s']} texts/s)"]
    for name, run in result["http"].items():
        lines.append(f"HTTP {name} (max_batch_size={run['max_batch_size']}): one tweet "
                     "p50 {p50} ms  p95 {p95} ms".format(**run["latency_ms"]))
        for level, figures in run["throughput"].items():
            lines.append(f"  concurrency {level:>2}: {figures['requests_per_s']:>7} req/s  "
                         f"p50 {figures['latency_ms']['p50']} ms  p95 {figures['latency_ms']['p95']}"
                         f" ms  x{figures['ratio_to_in_process']} of in-process")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
