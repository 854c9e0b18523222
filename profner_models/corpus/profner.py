"""ProfNER as distributed: subtask-1 (7a labels TSV), subtask-2 brat + TSV (7b entities)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from profner_models.corpus.brat import BratDoc, check_offsets, one_line, read_brat_docs
from profner_models.corpus.report import CorpusReport
from profner_models.corpus.tsv import tsv_rows
from profner_models.documents import Document, Span

HEADER_7A = ("tweet_id", "label")
HEADER_7B = ("tweet_id", "begin", "end", "type", "extraction")
#: The entity types the official ProfNER evaluation scores.
SCORED_TYPES = ("PROFESION", "SITUACION_LABORAL")
#: The span types the ProfNER guidelines annotate (ACTIVIDAD and FIGURATIVA are not scored).
TYPES = (*SCORED_TYPES, "ACTIVIDAD", "FIGURATIVA")
_EMPTY = ["-", "-", "-", "-"]


def _read_7a(path: Path, report: CorpusReport) -> dict[str, tuple[int, int]]:
    """tweet_id -> (label, line) in file order."""
    labels: dict[str, tuple[int, int]] = {}
    for number, (tweet_id, label) in tsv_rows(path, HEADER_7A, report):
        if label not in ("0", "1"):
            report.problem("tsv_syntax", path, number, f"label {label!r} is not 0 or 1")
        elif tweet_id in labels:
            report.problem("duplicate_id", path, number, f"tweet {tweet_id} listed twice")
        else:
            labels[tweet_id] = (int(label), number)
            continue
        report.skip("rows")
    return labels


def read_7a_tsv(path: Path | str) -> dict[str, int]:
    """``tweet_id -> label`` (0/1) in file order from a subtask-1 TSV."""
    rows = _read_7a(Path(path), CorpusReport())
    return {tweet_id: label for tweet_id, (label, _) in rows.items()}


def _read_7b(path: Path, report: CorpusReport) -> tuple[dict[str, list[tuple[Span, int]]], dict[str, int]]:
    """(tweet_id -> [(span with text = extraction, line)], tweet_id -> first line), file order.

    A ``tweet_id - - - -`` row gives an empty list.
    """
    out: dict[str, list[tuple[Span, int]]] = {}
    first_line: dict[str, int] = {}
    empty: set[str] = set()
    for number, (tweet_id, *rest) in tsv_rows(path, HEADER_7B, report):
        if rest == _EMPTY:
            if tweet_id in out:
                report.problem("duplicate_id", path, number, f"'{tweet_id} - - - -' row for a tweet already listed")
                report.skip("rows")
            else:
                out[tweet_id] = []
                first_line[tweet_id] = number
                empty.add(tweet_id)
                report.notes["empty_tsv_rows"] += 1
            continue
        begin, end, type_, extraction = rest
        if not (begin.isdigit() and end.isdigit()):
            report.problem("tsv_syntax", path, number, f"begin/end {begin!r}/{end!r} are not integers")
        elif tweet_id in empty:
            report.problem("duplicate_id", path, number, f"tweet {tweet_id} has a '- - - -' row and entities")
        else:
            out.setdefault(tweet_id, []).append((Span(int(begin), int(end), type_, extraction), number))
            first_line.setdefault(tweet_id, number)
            continue
        report.skip("rows")
    return out, first_line


def read_7b_tsv(path: Path | str) -> dict[str, list[Span]]:
    """``tweet_id -> spans`` (``text`` = the extraction column) in file order; empty tweets map to []."""
    rows, _ = _read_7b(Path(path), CorpusReport())
    return {tweet_id: [span for span, _ in spans] for tweet_id, spans in rows.items()}


def _cross_check(brat: BratDoc, rows: list[tuple[Span, int]], tsv: Path, report: CorpusReport) -> None:
    """The tsv rows of one tweet must equal its brat spans (offsets, type and extraction)."""
    doc = brat.doc
    remaining = Counter(span.key for span in doc.spans)
    for span, number in rows:
        if not check_offsets(doc.text, span.start, span.end, span.text, tsv, number, report):
            report.skip("rows")
        elif remaining[span.key] > 0:
            remaining[span.key] -= 1
        else:
            report.problem("source_mismatch", tsv, number,
                           f"{span.type} {span.start}-{span.end} of tweet {doc.id} is not in {brat.ann_path.name}")
            report.skip("rows")
    for span, number in zip(doc.spans, brat.lines):
        if remaining[span.key] > 0:
            remaining[span.key] -= 1
            report.problem("source_mismatch", brat.ann_path, number,
                           f"{span.type} {span.start}-{span.end} has no row in {tsv}")


def read_profner(root: Path | str, split: str = "train", report: CorpusReport | None = None) -> list[Document]:
    """One split of a ProfNER root: brat texts+spans, 7a labels, cross-checked against the 7b TSV.

    Documents come in subtask-1 order (then any tweet missing there, by id); spans in .ann order.
    """
    report = report or CorpusReport()
    root = Path(root)
    brat = {b.doc.id: b for b in read_brat_docs(root / "subtask-2" / "brat" / split, report)}
    tsv_7b = root / "subtask-2" / "tsv" / f"{split}.tsv"
    if tsv_7b.is_file():
        rows, first_line = _read_7b(tsv_7b, report)
        for tweet_id, spans in rows.items():
            if tweet_id not in brat:
                report.problem("missing_txt", tsv_7b, first_line[tweet_id],
                               f"tweet {tweet_id} has no readable .txt in subtask-2/brat/{split}")
                report.skip("rows", max(1, len(spans)))
        for tweet_id, b in brat.items():
            if tweet_id in rows:
                _cross_check(b, rows[tweet_id], tsv_7b, report)
            elif b.doc.spans:
                report.problem("source_mismatch", b.ann_path, None, f"tweet {tweet_id} has no row in {tsv_7b}")
    else:
        report.notes["no_7b_tsv"] += 1
    tsv_7a = root / "subtask-1" / f"{split}.tsv"
    labels = _read_7a(tsv_7a, report) if tsv_7a.is_file() else {}
    if not tsv_7a.is_file():
        report.notes["no_7a_tsv"] += 1
    for tweet_id, (_, number) in labels.items():
        if tweet_id not in brat:
            report.problem("missing_txt", tsv_7a, number, f"tweet {tweet_id} has no readable .txt in subtask-2/brat/{split}")
            report.skip("rows")
    order = [t for t in labels if t in brat] + sorted(brat.keys() - labels.keys())
    docs = []
    for tweet_id in order:
        doc = brat[tweet_id].doc
        if tsv_7a.is_file() and tweet_id not in labels:
            report.problem("missing_label", tsv_7a, None, f"tweet {tweet_id} has no label row")
        docs.append(replace(doc, label=labels[tweet_id][0] if tweet_id in labels else None))
    return docs


def write_7a_tsv(docs: list[Document], path: Path | str) -> None:
    """``tweet_id<TAB>label`` with header, one row per document in the given order."""
    lines = ["\t".join(HEADER_7A)]
    for doc in docs:
        if doc.label not in (0, 1):
            raise ValueError(f"document {doc.id}: label {doc.label!r} is not 0 or 1")
        lines.append(f"{doc.id}\t{doc.label}")
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def write_7b_tsv(docs: list[Document], path: Path | str) -> None:
    """The subtask-2 TSV: ``tweet_id begin end type extraction`` with header.

    As in the gold ``train.tsv``: one row per span (documents in the given order, spans in their
    order), then one ``tweet_id - - - -`` row per document without spans (in the given order).
    ``extraction`` is ``text[start:end]``, a tab/newline written as a space.
    """
    lines = ["\t".join(HEADER_7B)]
    for doc in docs:
        for span in doc.spans:
            extraction = one_line(doc.text[span.start:span.end])
            lines.append(f"{doc.id}\t{span.start}\t{span.end}\t{span.type}\t{extraction}")
    lines.extend("\t".join([doc.id, *_EMPTY]) for doc in docs if not doc.spans)
    Path(path).write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
