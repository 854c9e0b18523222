"""Entity-substitution augmentation on MEDDOPROF train: documents added, time, kept vs dropped.

    OMP_NUM_THREADS=1 python bench/augment.py [--data DIR] [--types ACTIVIDAD] [--copies 3]
                                              [--keep 0.5] [--examples 3]

Times the work of ``augment_documents`` (LM fit + candidates + scoring, one core), then prints the best- and worst-scored substitutions with their scored window, so
one can see whether the language model prefers fillers that fit their context.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from profner_models.config import data_root
from profner_models.corpus import augment, load_corpus
from profner_models.spans import apply_span_policy

TYPES = ["PROFESION", "SITUACION_LABORAL", "ACTIVIDAD"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root() / "meddoprof")
    parser.add_argument("--types", nargs="+", default=["ACTIVIDAD"])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--examples", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    docs, _ = load_corpus(args.data, "train")
    docs, _ = apply_span_policy(docs, types=TYPES, overlap="keep_outer")
    block = {"types": args.types, "copies": args.copies, "keep": args.keep, "seed": 13}
    config = {"data": {"augment": block}}

    start, cpu = time.perf_counter(), time.process_time()
    candidates = augment.scored_candidates(docs, config)  # all of augment_documents' work
    total_s, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    kept = sum(c.kept for c in candidates)
    print(f"{len(docs)} train docs -> {kept} added ({args.types}, copies {args.copies}, "
          f"keep {args.keep}); LM fit + candidates + scoring {total_s:.1f} s wall / {total_cpu:.1f} s CPU")
    ranked = sorted(candidates, key=lambda c: -c.score)
    print(f"{len(candidates)} candidates; score range {ranked[-1].score:.2f} .. {ranked[0].score:.2f}")
    for title, rows in (("best (kept)", ranked[:args.examples]), ("worst (dropped)", ranked[-args.examples:])):
        print(f"\n{title}:")
        for c in rows:
            left, filler, right = c.context
            print(f"  {c.score:6.2f}  {c.document.id}: ...{left} [[{filler.strip()}]]{right}...".replace("\n", " "))

if __name__ == "__main__":
    main()
