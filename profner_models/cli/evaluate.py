"""``profner evaluate``: official-style scores of a prediction file against the gold file
(``profner_models.tasks.scoring``).

Inputs:
- ``7a``: subtask-1 TSVs (``tweet_id  label``, with header);
- ``7b``: subtask-2 TSVs (``tweet_id begin end type extraction``; ``id - - - -`` rows skipped);
- ``meddoprof-ner`` / ``meddoprof-class``: brat folders (task1 / task2 layout; in task2 the brat
  label is the class). Only the ``.ann`` files are read, by the official parsing rules (M7 in
  :mod:`profner_models.tasks.metrics`): a file with a malformed line is skipped with a warning.
- ``meddoprof-norm``: NORM TSVs and the valid codes TSV (``--valid-codes``; the official scorer
  always applies one, so leaving it out prints a warning).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TASKS = ("7a", "7b", "meddoprof-ner", "meddoprof-class", "meddoprof-norm")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score predictions as the official evaluations do")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--gold", required=True, type=Path, help="gold TSV or brat folder")
    parser.add_argument("--pred", required=True, type=Path, help="predicted TSV or brat folder")
    parser.add_argument("--valid-codes", type=Path,
                        help="meddoprof-norm: meddoprof_valid_codes.tsv; predicted codes not in it "
                             "are dropped, as the official scorer does (without it: a warning)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def format_table(task: str, result: dict) -> str:
    rows = [("all", result)] + sorted(result.get("per_type", {}).items())
    width = max(len(name) for name, _ in rows)
    lines = [f"task {task}", f"{'':<{width}}  precision  recall  f1      tp    fp    fn"]
    for name, r in rows:
        lines.append(f"{name:<{width}}  {r['precision']:.4f}     {r['recall']:.4f}  {r['f1']:.4f}"
                     f"  {r['tp']:<5} {r['fp']:<5} {r['fn']:<5}")
    return "\n".join(lines)


def _warnings(result: dict) -> list[str]:
    out = [f"warning: {message}" for message in result["skipped"]]
    if result["ignored_ids"]:
        out.append(f"warning: {result['ignored_ids']} predicted ids are not in the gold file and were left out")
    if result.get("invalid_codes"):
        out.append(f"warning: {result['invalid_codes']} predicted codes are not in the valid codes "
                   "file and were left out")
    if result.get("duplicate_predictions"):
        out.append(f"warning: {result['duplicate_predictions']} predicted spans repeat another one"
                   " (MEDDOPROF counts each copy of a matching span as a true positive)")
    return out


def run(args: argparse.Namespace) -> int:
    from profner_models.corpus import CorpusError
    from profner_models.tasks.scoring import score

    for path in (args.gold, args.pred, args.valid_codes):
        if path is not None and not path.exists():
            print(f"profner evaluate: {path}: no such file or folder", file=sys.stderr)
            return 1
    try:
        result = score(args.task, args.gold, args.pred, args.valid_codes)
    except CorpusError as error:
        print(f"profner evaluate: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"task": args.task, **result}, indent=2) if args.json else format_table(args.task, result))
    for line in _warnings(result):
        print(line, file=sys.stderr)
    return 0
