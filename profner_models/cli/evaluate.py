"""``profner evaluate``: official-style scores of a prediction file against the gold file.

Inputs, read with the corpus readers:
- ``7a``: subtask-1 TSVs (``tweet_id  label``, with header);
- ``7b``: subtask-2 TSVs (``tweet_id begin end type extraction``; ``id - - - -`` rows skipped);
- ``meddoprof-ner``: brat folders (task1 layout); ``meddoprof-class``: brat folders (task2
  layout, the brat type is the class); ``meddoprof-norm``: NORM TSVs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

TASKS = ("7a", "7b", "meddoprof-ner", "meddoprof-class", "meddoprof-norm")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score predictions as the official evaluations do")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--gold", required=True, type=Path, help="gold TSV or brat folder")
    parser.add_argument("--pred", required=True, type=Path, help="predicted TSV or brat folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def _norm_spans(path: Path) -> dict:
    from profner_models.corpus import read_norm_tsv
    from profner_models.documents import Span

    spans: dict[str, list[Span]] = {}
    for row in read_norm_tsv(path):
        spans.setdefault(row.filename, []).append(Span(row.start, row.end, "", row.text, code=row.code))
    return spans


def _brat_spans(path: Path, as_class: bool) -> dict:
    from profner_models.corpus import read_brat_dir

    return {doc.id: [replace(s, cls=s.type) if as_class else s for s in doc.spans]
            for doc in read_brat_dir(path)}


def score(task: str, gold: Path, pred: Path) -> dict:
    """Read both files for ``task`` and score them (see :mod:`profner_models.metrics`)."""
    from profner_models import metrics
    from profner_models.corpus import read_7a_tsv, read_7b_tsv

    if task == "7a":
        return metrics.score_7a(read_7a_tsv(gold), read_7a_tsv(pred))
    if task == "7b":
        return metrics.score_7b(read_7b_tsv(gold), read_7b_tsv(pred))
    if task == "meddoprof-ner":
        return metrics.score_meddoprof_ner(_brat_spans(gold, False), _brat_spans(pred, False))
    if task == "meddoprof-class":
        return metrics.score_meddoprof_class(_brat_spans(gold, True), _brat_spans(pred, True))
    if task == "meddoprof-norm":
        return metrics.score_meddoprof_norm(_norm_spans(gold), _norm_spans(pred))
    raise ValueError(f"unknown task {task!r}")


def format_table(task: str, result: dict) -> str:
    rows = [("all", result)] + sorted(result.get("per_type", {}).items())
    width = max(len(name) for name, _ in rows)
    lines = [f"task {task}", f"{'':<{width}}  precision  recall  f1      tp    fp    fn"]
    for name, r in rows:
        lines.append(f"{name:<{width}}  {r['precision']:.4f}     {r['recall']:.4f}  {r['f1']:.4f}"
                     f"  {r['tp']:<5} {r['fp']:<5} {r['fn']:<5}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from profner_models.corpus import CorpusError

    for path in (args.gold, args.pred):
        if not path.exists():
            print(f"profner evaluate: {path}: no such file or folder", file=sys.stderr)
            return 1
    try:
        result = score(args.task, args.gold, args.pred)
    except CorpusError as error:
        print(f"profner evaluate: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"task": args.task, **result}, indent=2) if args.json else format_table(args.task, result))
    if result["ignored_ids"]:
        print(f"warning: {result['ignored_ids']} predicted ids are not in the gold file and were left out",
              file=sys.stderr)
    return 0
