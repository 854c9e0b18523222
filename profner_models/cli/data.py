"""``profner data``: corpus statistics and the official corpus download."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from profner_models.documents import Document


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="inspect and download the corpora")
    commands = parser.add_subparsers(dest="data_command", required=True)

    stats = commands.add_parser("stats", help="documents, spans, overlaps, tokenizer alignment")
    stats.add_argument("path", type=Path, help="a ProfNER or MEDDOPROF root, or one brat folder")
    stats.add_argument("--split", default="train", help="corpus split (default: train)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--lenient", action="store_true",
                       help="count bad items as warnings and skip them instead of failing")
    stats.add_argument("--model", type=Path, default=None,
                       help="a model dir: also how new the corpus's words are to it (the share "
                            "outside its vocabulary, and outside its training documents)")
    stats.set_defaults(func=run_stats)

    download = commands.add_parser("download", help="fetch the official ProfNER and MEDDOPROF zips")
    download.add_argument("--dest", type=Path, default=Path("data"), help="target folder (default: ./data)")
    download.add_argument("--url-profner", help="ProfNER zip URL (default: Zenodo record 4563995)")
    download.add_argument("--url-meddoprof", help="MEDDOPROF zip URL (default: Zenodo record 4775741)")
    download.add_argument("--sha256-profner", help="expected sha256 of the ProfNER zip")
    download.add_argument("--sha256-meddoprof", help="expected sha256 of the MEDDOPROF zip")
    download.add_argument("--no-progress", action="store_true", help="no progress bars")
    download.set_defaults(func=run_download)


def run_stats(args: argparse.Namespace) -> int:
    from profner_models.corpus import CorpusError, corpus_stats, format_stats, load_corpus

    try:
        docs, report = load_corpus(args.path, split=args.split, lenient=args.lenient)
    except CorpusError as error:
        print(f"profner data stats: {error}", file=sys.stderr)
        return 1
    stats = corpus_stats(docs, report)
    if args.model is not None:
        try:
            stats.update(model_novelty(args.model, docs))
        except ValueError as error:  # artifacts.ModelDirError names the file
            print(f"profner data stats: {error}", file=sys.stderr)
            return 1
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_stats(stats))
    for message in report.messages:
        print(f"warning: {message}", file=sys.stderr)
    return 0


def model_novelty(model_dir: Path, docs: Sequence[Document]) -> dict:
    """``model``, ``unknown_word_rate`` and ``unseen_word_rate`` of ``docs`` for that model."""
    from profner_models.artifacts import load
    from profner_models.models import encode_text
    from profner_models.training import word_novelty

    model = load(model_dir)
    encoded = [encode_text(doc.text, model.gazetteer) for doc in docs]
    rates = word_novelty(model.network.backbone, encoded)
    return {"model": str(model_dir),
            **{key.removeprefix("dev_").replace("_rate", "_word_rate"): value
               for key, value in rates.items()}}


def run_download(args: argparse.Namespace) -> int:
    from profner_models.corpus.download import (
        MEDDOPROF_URL,
        PROFNER_URL,
        DownloadError,
        default_sources,
        fetch_all,
    )

    profner, meddoprof = default_sources(args.url_profner or PROFNER_URL, args.url_meddoprof or MEDDOPROF_URL)
    sources = [replace(profner, sha256=args.sha256_profner), replace(meddoprof, sha256=args.sha256_meddoprof)]
    try:
        fetch_all(args.dest, sources, progress=not args.no_progress)
    except DownloadError as error:
        print(f"profner data download: {error}", file=sys.stderr)
        return 1
    return 0
