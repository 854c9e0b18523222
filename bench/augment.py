"""Entity-substitution augmentation on MEDDOPROF train: documents added, time, kept vs dropped.

    OMP_NUM_THREADS=1 python bench/augment.py [--data DIR] [--types ACTIVIDAD] [--copies 3]
                                              [--keep 0.5] [--examples 3]

Times ``augment_documents`` end to end (LM fit + candidates + scoring) and the scorer fit alone
(one core), then prints the best- and worst-scored substitutions with their scored window, so
one can see whether the language model prefers fillers that fit their context.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from profner_models import augment
from profner_models.corpus import apply_span_policy, load_corpus
from profner_models.vectors import data_root

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
    out = augment.augment_documents(docs, config)
    total_s, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    scorer = augment.scorers.build(dict(augment._DEFAULT_SCORER), docs=docs)
    fit_s = time.perf_counter() - start
    print(f"{len(docs)} train docs -> {len(out) - len(docs)} added ({args.types}, copies {args.copies}, "
          f"keep {args.keep}); augment_documents {total_s:.1f} s wall / {total_cpu:.1f} s CPU, "
          f"of which LM fit {fit_s:.1f} s")

    options = augment._validate(block, docs, config)
    pool = augment._filler_pool(docs, options["types"])
    rng = random.Random(options["seed"])
    candidates = [c for d in docs for c in augment._candidates(d, pool, options["copies"], rng)]
    scored = sorted(((scorer.score(*augment._context(d, s, options["window"])), d, s) for d, s in candidates),
                    key=lambda item: -item[0])
    print(f"{len(candidates)} candidates; score range {scored[-1][0]:.2f} .. {scored[0][0]:.2f}")
    for title, rows in (("best (kept)", scored[:args.examples]), ("worst (dropped)", scored[-args.examples:])):
        print(f"\n{title}:")
        for value, doc, span in rows:
            left, filler, right = augment._context(doc, span, options["window"])
            print(f"  {value:6.2f}  {doc.id}: ...{left} [[{filler.strip()}]]{right}...".replace("\n", " "))


if __name__ == "__main__":
    main()
