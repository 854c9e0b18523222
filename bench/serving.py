"""HTTP serving figures for ``profner serve``: latency of one tweet, throughput at concurrency
1/8/32/64 with and without server-side batching, against the same ``Predictor`` in-process and
behind a plain FastAPI + uvicorn process (``bench/plain_server.py``, the baseline).

    .venv/bin/python bench/serving.py [--model MODEL_DIR] [--quick] [--json]

Without ``--model`` a small model is trained on the bundled sample first (smoke config). The
server runs on a private local Ray instance on a free loopback port (one replica, 1 CPU); the
clients are threads of this process with keep-alive connections, one request = one tweet, so
on a small machine they compete with the server for the same cores (reported as ``cpus``).

Paired: the baseline stays up while each Serve run is measured, and the two take turns (the
one-tweet requests one by one, each concurrency level in ``ROUNDS`` rounds, the order swapped
each round, every level inside each round). A shared machine's speed moves from minute to
minute (on one 2-core VM the same load read 910 and then 396 req/s half a minute apart), so a
ratio of two figures measured a minute apart measured the machine; taken in turns, both sides
of each ratio (Serve over the baseline, concurrency 32 over 1) see the same minutes.

Printed per run: the one-tweet p50 over the baseline's (goal <= 1.5), throughput per
concurrency, over its own concurrency-1 throughput (goal at 32: >= 3) and over the baseline's
at the same concurrency (goal at 32: >= 1), and where a served request's time went, from the
``Server-Timing`` header (means, ms): parse, wait in the batch queue, model, replica total, and
``hops`` = client latency - replica total (proxy, router and the hops between them and the
replica).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from stats import percentile

from profner_models import artifacts

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONCURRENCY = (1, 8, 32, 64)
ROUNDS = 3  # turns per concurrency level and server: each gets seconds / ROUNDS a turn
TIMINGS = ("parse", "wait", "model", "replica")
BASELINE = "plain_uvicorn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model dir (default: train a smoke model)")
    parser.add_argument("--quick", action="store_true", help="fewer requests (under 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--max-batch-size", type=int, default=32, help="the batching run's size")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--replicas", type=int, default=1,
                        help="> 1: also a batching run with this many replicas (behind Serve's "
                             "proxy: one replica answers on the port itself)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # as a 1-CPU replica runs (Ray sets OMP_NUM_THREADS=1)
    scratch = Path(tempfile.mkdtemp(prefix="pfb", dir="/tmp"))  # short: Ray socket paths
    stdout = os.dup(1)
    os.dup2(2, 1)  # Ray prints its own messages on fd 1: keep stdout for the figures
    try:
        model_dir = args.model or train_smoke_model(scratch / "model", quiet=args.json)
        tweets = sample_tweets()
        seconds = 3.0 if args.quick else 10.0
        sequential = 60 if args.quick else 300
        result = {"model": str(model_dir), "cpus": os.cpu_count(), "quick": args.quick,
                  "seconds_per_level": seconds,
                  "in_process": _in_process(model_dir, tweets, sequential)}
        with _plain(model_dir) as baseline_port:
            result["http"] = _http(model_dir, tweets, scratch, seconds, sequential, baseline_port,
                                   args.max_batch_size, args.batch_wait_ms, args.replicas,
                                   quiet=args.json)
        _add_ratios(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        sys.stdout.flush()
        os.dup2(stdout, 1)
    print(json.dumps(result) if args.json else _table(result))
    return 0


def train_smoke_model(model_dir: Path, quiet: bool) -> Path:
    import yaml

    from profner_models.training import fit, load_task_data

    if not quiet:
        print("training a smoke model on the bundled sample ...", file=sys.stderr)
    config = yaml.safe_load((REPO / "profner_models/configs/smoke_rnn.yaml").read_text("utf-8"))
    train, dev = load_task_data(config, None)
    artifacts.save(fit(config, train, dev, progress=False).model, model_dir)
    return model_dir


def sample_tweets() -> list[str]:
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
    return {"latency_ms": percentiles(times), "single_text_per_s": round(1 / statistics.mean(times), 1),
            "batch32_texts_per_s": round(batched, 1)}


def _http(model_dir: Path, tweets: list[str], scratch: Path, seconds: float, sequential: int,
          baseline_port: int, max_batch_size: int, batch_wait_ms: float, replicas: int,
          quiet: bool) -> dict:
    """Each Serve run measured in turns with the baseline on ``baseline_port``: the run's own
    figures, plus its ``baseline`` (the baseline's, taken in the same turns); the baseline's
    full figures (``plain_uvicorn``) are those taken beside the first run."""
    from serve import runner
    from serve.schemas import ServeSettings

    port = runner.free_port("127.0.0.1")
    runs = {"batching": ServeSettings(model=str(model_dir), max_batch_size=max_batch_size,
                                      batch_wait_ms=batch_wait_ms),
            "no_batching": ServeSettings(model=str(model_dir), max_batch_size=1)}
    if replicas > 1:
        runs[f"batching_{replicas}_replicas"] = ServeSettings(
            model=str(model_dir), max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
            replicas=replicas)
    bodies = [json.dumps({"text": t}).encode("utf-8") for t in tweets]
    out: dict = {}
    for name, settings in runs.items():  # each on a new local instance, as profner serve runs
        if not quiet:
            print(f"deploying ({name}) ...", file=sys.stderr)
        runner.start(settings, "127.0.0.1", port, ray_temp_dir=str(scratch / "ray"))
        try:
            _check_deployed(port, settings.max_batch_size)
            figures = _measure({BASELINE: baseline_port, name: port}, bodies, seconds, sequential)
        finally:
            runner.stop()
        out.setdefault(BASELINE, {"max_batch_size": 1, "batch_wait_ms": None, **figures[BASELINE]})
        out[name] = {"max_batch_size": settings.max_batch_size,
                     "batch_wait_ms": settings.batch_wait_ms, "replicas": settings.replicas,
                     "direct_ingress": runner.direct_ingress(settings), **figures[name],
                     "baseline": {"p50_ms": figures[BASELINE]["latency_ms"]["p50"],
                                  "requests_per_s": {level: load["requests_per_s"] for level, load
                                                     in figures[BASELINE]["throughput"].items()}}}
    return out


@contextmanager
def _plain(model_dir: Path) -> Iterator[int]:
    """The baseline, ``bench/plain_server.py``, in its own process on a free loopback port."""
    from serve import runner

    port = runner.free_port("127.0.0.1")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, str(REPO / "bench" / "plain_server.py"),
                               str(model_dir), str(port)], env=env)
    try:
        runner.wait_ready(f"http://127.0.0.1:{port}", timeout_s=120)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _measure(ports: dict[str, int], bodies: list[bytes], seconds: float, sequential: int) -> dict:
    """Per server: one-tweet latency and ``Server-Timing`` breakdown, and throughput per
    concurrency level, the servers taking turns (module docstring)."""
    for port in ports.values():
        _load(port, bodies, 1, 1.0)  # warm-up
    latencies, timings = _sequential(ports, bodies, sequential)
    loads: dict[str, dict[int, list[Load]]] = {name: {c: [] for c in CONCURRENCY} for name in ports}
    for turn in range(ROUNDS):
        for concurrency in CONCURRENCY:
            for name in (list(ports) if turn % 2 == 0 else list(ports)[::-1]):
                loads[name][concurrency].append(
                    _load(ports[name], bodies, concurrency, seconds / ROUNDS))
    return {name: {"latency_ms": percentiles(latencies[name]),
                   "server_timing_ms": _breakdown(latencies[name], timings[name]),
                   "throughput": {str(c): _throughput(parts) for c, parts in loads[name].items()}}
            for name in ports}


def _breakdown(latencies: list[float], timings: list[dict[str, float]]) -> dict | None:
    """Means of the ``Server-Timing`` parts and of what the client waited beyond them."""
    if not timings:
        return None
    means = {name: round(statistics.mean(t[name] for t in timings), 2) for name in TIMINGS}
    means["hops"] = round(1000 * statistics.mean(latencies) - means["replica"], 2)
    return means


def _add_ratios(result: dict) -> None:
    """Per run: p50 and throughput over the baseline's taken in the same turns, throughput over
    in-process and over the run's own concurrency 1."""
    single = result["in_process"]["single_text_per_s"]
    for run in result["http"].values():
        baseline = run.get("baseline") or {
            "p50_ms": run["latency_ms"]["p50"],
            "requests_per_s": {c: load["requests_per_s"] for c, load in run["throughput"].items()}}
        run["p50_over_baseline"] = round(run["latency_ms"]["p50"] / baseline["p50_ms"], 3)
        one = run["throughput"]["1"]["requests_per_s"]
        for level, load in run["throughput"].items():
            load["ratio_to_in_process"] = round(load["requests_per_s"] / single, 3)
            load["ratio_to_concurrency_1"] = round(load["requests_per_s"] / one, 3)
            load["ratio_to_baseline"] = round(load["requests_per_s"]
                                              / baseline["requests_per_s"][level], 3)


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


def _post(connection: http.client.HTTPConnection, body: bytes) -> tuple[float, dict | None]:
    """(seconds, the answer's ``Server-Timing`` in ms or None)."""
    started = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    elapsed = time.perf_counter() - started
    if answer.status != 200:
        raise RuntimeError(f"POST /predict answered {answer.status}")
    header = answer.getheader("Server-Timing")
    timing = None if header is None else {
        name.strip(): float(duration.split("=")[1])
        for name, duration in (part.split(";") for part in header.split(","))}
    return elapsed, timing


def _sequential(ports: dict[str, int], bodies: list[bytes], count: int
                ) -> tuple[dict[str, list[float]], dict[str, list[dict]]]:
    """``count`` one-tweet requests to each server, one at a time, the servers in turn."""
    connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                   for name, port in ports.items()}
    answers: dict[str, list] = {name: [] for name in ports}
    try:
        for i in range(count):
            for name, connection in connections.items():
                answers[name].append(_post(connection, bodies[i % len(bodies)]))
    finally:
        for connection in connections.values():
            connection.close()
    return ({name: [seconds for seconds, _ in mine] for name, mine in answers.items()},
            {name: [t for _, t in mine if t is not None] for name, mine in answers.items()})


class Load(NamedTuple):
    latencies: list[float]
    seconds: float
    client_cpu_s: float


def _load(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> Load:
    """``concurrency`` clients posting back to back for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, i = [], offset
        while time.perf_counter() < stop_at:
            mine.append(_post(connection, bodies[i % len(bodies)])[0])
            i += concurrency
        connection.close()
        with lock:
            latencies.extend(mine)

    started, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(latencies, time.perf_counter() - started, time.process_time() - cpu)


def _throughput(parts: list[Load]) -> dict:
    """One concurrency level's turns together. The clients share the server's CPUs: what they
    burn is taken from it."""
    latencies = [seconds for part in parts for seconds in part.latencies]
    elapsed, cpu = sum(p.seconds for p in parts), sum(p.client_cpu_s for p in parts)
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": percentiles(latencies), "client_cpus": round(cpu / elapsed, 2),
            "client_cpu_ms_per_request": round(1000 * cpu / max(1, len(latencies)), 3)}


def percentiles(seconds: list[float]) -> dict:
    """p50 and p95 in ms, and the count."""
    return {"p50": round(1000 * percentile(seconds, 50), 2), "p95": round(1000 * percentile(seconds, 95), 2),
            "n": len(seconds)}


def _table(result: dict) -> str:
    lines = [f"model {result['model']}  ({result['cpus']} CPUs, clients on the same machine)",
             "in-process Predictor, one tweet: p50 {p50} ms  p95 {p95} ms".format(
                 **result["in_process"]["latency_ms"])
             + f"  -> {result['in_process']['single_text_per_s']} texts/s "
             f"(batch of 32: {result['in_process']['batch32_texts_per_s']} texts/s)"]
    for name, run in result["http"].items():
        lines.append(f"HTTP {name} (max_batch_size={run['max_batch_size']}): one tweet "
                     "p50 {p50} ms  p95 {p95} ms".format(**run["latency_ms"])
                     + f"  x{run['p50_over_baseline']} of the baseline's p50 (same turns)")
        if run["server_timing_ms"]:
            lines.append("  one tweet, mean ms: " + "  ".join(
                f"{part} {ms}" for part, ms in run["server_timing_ms"].items()))
        for level, figures in run["throughput"].items():
            lines.append(f"  concurrency {level:>2}: {figures['requests_per_s']:>7} req/s  "
                         f"p50 {figures['latency_ms']['p50']} ms  p95 {figures['latency_ms']['p95']}"
                         f" ms  x{figures['ratio_to_concurrency_1']} of concurrency 1"
                         f"  x{figures['ratio_to_baseline']} of the baseline"
                         f"  x{figures['ratio_to_in_process']} of in-process"
                         f"  clients {figures['client_cpus']} CPUs")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
