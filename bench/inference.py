"""Inference speed of a saved model: latency one text at a time, throughput batched.

    python bench/inference.py --model MODEL_DIR [--texts DIR] [--threads 2] [--quick] [--json]
                              [--spacy]

Texts: the ``.txt`` files of DIR (default: the ProfNER train tweets under the data root, else
the bundled sample). Latency is ``Predictor.predict([text])`` end to end (tokenizer, gazetteer,
model, CRF decoding), after a warm-up on other texts (``--warmup N`` texts of the bundled
sample: a server that has answered a while, whose per-word memos and spaCy's lexicon hold the
common words; each measured text is timed once, so it is new to both: with fewer texts than
``n_single``, fewer are timed); ``tokenize_ms_p50`` is the tokenizer's share of those calls.
``cpu_ms_*`` is the calling thread's CPU time per text (``time.thread_time``): on a shared
machine it stays close to the uncontended latency when the wall clock does not (see
``load_avg_1min``; with threads > 1 it misses the helper threads' share).
``compiled_loops``: whether the GRU steps and Viterbi ran in C (``_kernels.c``, built by
the install where there is a C compiler) or in NumPy.
``unknown_word_rate``: the texts' words outside the model's vocabulary (new text costs more:
unknown words get computed vectors, and spaCy's vocabulary grows).

``--spacy`` times spaCy's stock CPU NER (``spacy init config --lang es --pipeline ner
--optimize efficiency``, untrained: its speed is its architecture's) on the same texts, one at a
time, interleaved with ours so both meet the same machine load; ``ratio_p50`` is ours / spaCy's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import torch
from stats import percentile

from profner_models.config import data_root
from profner_models.corpus import read_text_dir
from profner_models.kernels import compiled
from profner_models.models import encode_text, joint
from profner_models.predict import Predictor
from profner_models.training import word_novelty


def default_texts() -> Path:
    real = data_root() / "profner" / "subtask-2" / "brat" / "train"
    if real.is_dir():
        return real
    from profner_models.sample import SAMPLE_DIR

    return next(p.parent for p in sorted(Path(SAMPLE_DIR).rglob("*.txt")))


def warmup_texts() -> list[str]:
    from profner_models.sample import PROFNER_SAMPLE

    return [d.text for split in ("train", "valid")
            for d in read_text_dir(PROFNER_SAMPLE / "subtask-2" / "brat" / split)]


def run(model_dir: Path, texts_dir: Path, threads: int, n_single: int, n_batch: int,
        batch_size: int, with_spacy: bool = False, warmup: int = 400) -> dict:
    torch.set_num_threads(threads)
    texts = [d.text for d in read_text_dir(texts_dir)]
    if not texts:
        raise SystemExit(f"{texts_dir}: no .txt files")
    started = time.perf_counter()
    predictor = Predictor(model_dir, batch_size=batch_size)
    load_s = time.perf_counter() - started
    single = texts[:n_single]
    peer = _spacy_pipeline() if with_spacy else None
    for text in (warmup_texts() * 2)[:warmup] or single[:20]:
        predictor.predict([text])
        if peer is not None:
            peer(text)
    latencies, cpu, tok, peer_ms = [], [], [], []
    with _timed_tokenizer(tok):
        for text in single:
            t0, c0 = time.perf_counter(), time.thread_time()
            predictor.predict([text])
            latencies.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
            if peer is not None:
                t0 = time.perf_counter()
                peer(text)
                peer_ms.append((time.perf_counter() - t0) * 1000)
    batch = (texts * (n_batch // len(texts) + 1))[:n_batch]
    t0 = time.perf_counter()
    predictor.predict(batch)
    batched_s = time.perf_counter() - t0
    novelty = word_novelty(predictor.model.network.backbone,
                           [encode_text(t, predictor.model.gazetteer) for t in texts[:2000]])
    peer_figures = {}
    if peer_ms:
        peer_figures = {"spacy_latency_ms_p50": round(statistics.median(peer_ms), 3),
                        "spacy_latency_ms_p95": round(percentile(peer_ms, 95), 3),
                        "ratio_p50": round(statistics.median(latencies) / statistics.median(peer_ms), 3)}
    return {
        "model": str(model_dir),
        "texts": str(texts_dir),
        "threads": torch.get_num_threads(),
        "compiled_loops": compiled() is not None,
        "parameters": predictor.model.num_parameters,
        "load_s": round(load_s, 3),
        "n_single": len(single),
        "warmup": warmup,
        "latency_ms_p50": round(statistics.median(latencies), 3),
        "latency_ms_p95": round(percentile(latencies, 95), 3),
        "latency_ms_mean": round(statistics.fmean(latencies), 3),
        "cpu_ms_p50": round(statistics.median(cpu), 3),
        "cpu_ms_p95": round(percentile(cpu, 95), 3),
        "tokenize_ms_p50": round(statistics.median(tok), 3),
        "n_batch": len(batch),
        "batch_size": batch_size,
        "throughput_per_s": round(len(batch) / batched_s, 1),
        "unknown_word_rate": round(novelty.get("dev_unknown_rate", 0.0), 4),
        **peer_figures,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


@contextlib.contextmanager
def _timed_tokenizer(record: list[float]) -> Iterator[None]:
    """Inside: the model's tokenizer (``joint.tokenize``) timed, each call's ms appended to
    ``record``."""
    plain = joint.tokenize

    def timed(text: str) -> list:
        started = time.perf_counter()
        tokens = plain(text)
        record.append((time.perf_counter() - started) * 1000)
        return tokens

    joint.tokenize = timed
    try:
        yield
    finally:
        joint.tokenize = plain


def _spacy_pipeline():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import spacy_peer

    return spacy_peer.pipeline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--texts", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="fewer texts (well under 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--warmup", type=int, default=400,
                        help="texts of the bundled sample run first (default 400)")
    parser.add_argument("--spacy", action="store_true",
                        help="also time spaCy's stock CPU NER on the same texts (ratio)")
    args = parser.parse_args(argv)
    n_single, n_batch = (300, 1000) if args.quick else (2000, 6000)
    result = run(args.model, args.texts or default_texts(), args.threads, n_single, n_batch,
                 args.batch_size, args.spacy, args.warmup)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
