"""``profner predict --model DIR --input TXT_DIR --out-7a FILE --out-7b FILE``: official TSVs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="run a trained model on a folder of .txt files")
    parser.add_argument("--model", type=Path, required=True, help="model dir (profner train --out)")
    parser.add_argument("--input", type=Path, required=True, help="folder of <tweet_id>.txt files")
    parser.add_argument("--out-7a", type=Path, help="7a TSV to write (tweet_id, label)")
    parser.add_argument("--out-7b", type=Path, help="7b TSV to write (tweet_id, begin, end, type, extraction)")
    parser.add_argument("--out-dir", type=Path,
                        help="MEDDOPROF model: folder for task1/, task2/ (brat) and norm.tsv")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from profner_models.artifacts import ModelDirError
    from profner_models.corpus import (
        CorpusError,
        read_text_dir,
        write_7a_tsv,
        write_7b_tsv,
        write_meddoprof_outputs,
    )
    from profner_models.predict import Predictor, predict_corpus

    if args.out_7a is None and args.out_7b is None and args.out_dir is None:
        print("profner predict: give --out-7a and/or --out-7b (ProfNER) or --out-dir (MEDDOPROF)",
              file=sys.stderr)
        return 2
    if not args.input.is_dir():
        print(f"profner predict: {args.input}: not a folder", file=sys.stderr)
        return 1
    try:
        predictor = Predictor(args.model, batch_size=args.batch_size)
        docs = read_text_dir(args.input)
    except (ModelDirError, CorpusError) as error:
        print(f"profner predict: {error}", file=sys.stderr)
        return 1
    predictions = predict_corpus(predictor, [doc.text for doc in docs])
    docs = [replace(doc, label=p.label, spans=p.entities) for doc, p in zip(docs, predictions)]
    if args.out_dir is not None:  # MEDDOPROF: task1/, task2/, norm.tsv
        counts = write_meddoprof_outputs(docs, args.out_dir)
        print(f"profner predict: {counts['documents']} documents, {counts['task1']} entities, "
              f"{counts['task2']} classes, {counts['norm']} codes -> {args.out_dir}")
        if args.out_7a is None and args.out_7b is None:
            return 0
    for path, write in ((args.out_7a, write_7a_tsv), (args.out_7b, write_7b_tsv)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(docs, path)
    print(f"profner predict: {len(docs)} documents, "
          f"{sum(d.label for d in docs)} positive, {sum(len(d.spans) for d in docs)} entities")
    return 0
