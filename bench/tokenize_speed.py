"""Tokenizer speed on real tweets: per-text latency (wall and CPU) and throughput.

    python bench/tokenize_speed.py [--texts DIR] [--json]

Texts: the ``.txt`` files of DIR (default: the ProfNER train tweets under the data root).
The first half warms the tokenizer (spaCy caches lexemes and affix splits); the second half is
timed one text at a time, so its words are partly new, as at inference. CPU time
(``time.process_time``) is given too: on a shared machine wall time includes waiting.
Target: a tweet in well under 1 ms. Hostile texts (runs of punctuation, emoji or random
symbols with no space, 1,000 to 10,000 characters) are timed too: their time must grow
linearly with the length (``ms_per_1k_chars`` about constant), not quadratically.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from stats import percentile

from profner_models.config import data_root
from profner_models.corpus import read_text_dir
from profner_models.text.tokenize import get_tokenizer, tokenize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=Path, default=data_root() / "profner" / "subtask-2" / "brat" / "train")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    texts = [doc.text for doc in read_text_dir(args.texts)]
    start = time.perf_counter()
    get_tokenizer()
    build_s = time.perf_counter() - start
    warm, timed = texts[: len(texts) // 2], texts[len(texts) // 2:]
    for text in warm:
        tokenize(text)
    wall, cpu = [], []
    for text in timed:
        w, c = time.perf_counter(), time.process_time()
        tokenize(text)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    figures = {
        "texts_timed": len(timed),
        "build_s": round(build_s, 3),
        "wall_us_mean": round(sum(wall) / len(wall) * 1e6, 1),
        "wall_us_p50": round(percentile(wall, 50) * 1e6, 1),
        "wall_us_p99": round(percentile(wall, 99) * 1e6, 1),
        "cpu_us_mean": round(sum(cpu) / len(cpu) * 1e6, 1),
        "cpu_us_p50": round(percentile(cpu, 50) * 1e6, 1),
        "cpu_us_p99": round(percentile(cpu, 99) * 1e6, 1),
        "texts_per_s": round(len(timed) / sum(wall), 1),
    }
    figures["hostile"] = hostile_timings()
    print(json.dumps(figures) if args.json else "\n".join(f"{k:<14} {v}" for k, v in figures.items()))


def hostile_timings(lengths: tuple[int, ...] = (1_000, 4_000, 10_000)) -> dict[str, dict]:
    """Seconds to tokenise whitespace-free hostile texts of each length, and ms per 1k chars."""
    rng = random.Random(0)
    symbols = "!?¡¿.,;:…-#@\"«»()😀🇪🇸👩🏽‍⚕️"
    makers = {"exclamations": lambda n: "!" * n, "emoji": lambda n: "😀" * n,
              "random_symbols": lambda n: "".join(rng.choice(symbols) for _ in range(n))}
    out = {}
    for name, make in makers.items():
        for length in lengths:
            text = make(length)
            start = time.perf_counter()
            tokenize(text)
            seconds = time.perf_counter() - start
            out[f"{name}_{length}"] = {"s": round(seconds, 4),
                                       "ms_per_1k_chars": round(1e6 * seconds / length, 2)}
    return out


if __name__ == "__main__":
    main()
