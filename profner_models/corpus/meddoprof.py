"""MEDDOPROF: task1 (NER types) + task2 (CLASS, same spans) brat folders and the NORM TSV.

A document may carry another name in task2/NORM than in task1 (the released training set calls
one case ``zzzzzzzzzzzzzzzz287`` in task1 and ``caso_clinico_psiquiatria287`` elsewhere). Such a
task2 document is matched to the task1 document with identical text (never by a hard-coded
name); the match is counted in ``report.notes["docs_matched_by_text"]`` and kept in
``report.aliases`` (other name -> task1 id), which NORM rows then resolve through.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from profner_models.corpus.brat import BratDoc, check_offsets, read_brat_docs, write_brat
from profner_models.corpus.report import CorpusError, CorpusReport
from profner_models.corpus.tsv import quoted_tsv_rows, write_quoted_tsv
from profner_models.documents import Document

NORM_HEADER = ("filename", "text", "span", "code")
#: The span types and CLASS labels of the MEDDOPROF guidelines.
TYPES = ("PROFESION", "SITUACION_LABORAL", "ACTIVIDAD")
CLASSES = ("PACIENTE", "FAMILIAR", "SANITARIO", "OTROS")
CODES_HEADER = ("code", "label", "alternative_label")


@dataclass(frozen=True)
class NormRow:
    filename: str
    text: str
    start: int
    end: int
    code: str
    line: int


def read_norm_tsv(path: Path | str, report: CorpusReport | None = None) -> list[NormRow]:
    """Rows of a NORM TSV (``"filename" "text" "span" "code"``, span ``"start end"``), file order."""
    report = report or CorpusReport()
    path = Path(path)
    rows = []
    for number, (filename, text, span, code) in quoted_tsv_rows(path, NORM_HEADER, report):
        parts = span.split(" ")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            report.problem("tsv_syntax", path, number, f"span {span!r} is not 'start end'")
            report.skip("rows")
            continue
        rows.append(NormRow(filename, text, int(parts[0]), int(parts[1]), code, number))
    return rows


def read_valid_codes(path: Path | str) -> dict[str, tuple[str, ...]]:
    """``code -> labels`` from ``meddoprof_valid_codes.tsv``: the label, then the ``|``-separated
    alternative labels, without repeats; a code listed on several rows gets all their labels."""
    report = CorpusReport()
    labels: dict[str, list[str]] = {}
    for _, (code, label, alternatives) in quoted_tsv_rows(Path(path), CODES_HEADER, report):
        seen = labels.setdefault(code, [])
        for name in [label, *alternatives.split("|")]:
            if name and name not in seen:
                seen.append(name)
    return {code: tuple(names) for code, names in labels.items()}


def _merge_classes(doc1: BratDoc, doc2: BratDoc, report: CorpusReport) -> Document:
    """task1 spans with ``cls`` from the task2 span at the same offsets."""
    classes: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
    for span, number in zip(doc2.doc.spans, doc2.lines):
        classes[(span.start, span.end)].append((span.type, number))
    spans = []
    for span, number in zip(doc1.doc.spans, doc1.lines):
        found = classes.get((span.start, span.end))
        if found:
            spans.append(replace(span, cls=found.pop(0)[0]))
        else:
            report.problem("source_mismatch", doc1.ann_path, number,
                           f"span {span.start}-{span.end} has no CLASS span in {doc2.ann_path}")
            spans.append(span)
    for (start, end), left in classes.items():
        for cls, number in left:
            report.problem("source_mismatch", doc2.ann_path, number,
                           f"CLASS span {start}-{end} has no NER span in {doc1.ann_path}")
            report.skip("spans")
    return replace(doc1.doc, spans=spans)


def _match_task2(task1: dict[str, BratDoc], task2: list[BratDoc], report: CorpusReport) -> dict[str, Document]:
    """task1 id -> Document with classes; a task2 name unknown to task1 is matched by text."""
    names2 = {b.doc.id for b in task2}
    by_text: dict[str, list[str]] = defaultdict(list)
    for doc_id, b in task1.items():
        if doc_id not in names2:
            by_text[b.doc.text].append(doc_id)
    merged: dict[str, Document] = {}
    for b2 in task2:
        target = b2.doc.id
        if target not in task1:
            candidates = by_text.get(b2.doc.text, [])
            if len(candidates) != 1:
                report.problem("source_mismatch", b2.ann_path, None,
                               f"task2 document {target} matches no task1 document by name or text")
                report.skip("documents")
                continue
            target = candidates[0]
            report.aliases[b2.doc.id] = target
            report.notes["docs_matched_by_text"] += 1
        merged[target] = _merge_classes(task1[target], b2, report)
    for doc_id, b in task1.items():
        if doc_id not in merged:
            report.problem("source_mismatch", b.ann_path, None, f"{doc_id} has no task2 document")
            merged[doc_id] = b.doc
    return merged


def _attach_codes(docs: dict[str, Document], task1: dict[str, BratDoc], norm_path: Path,
                  report: CorpusReport) -> dict[str, Document]:
    codes: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    for row in read_norm_tsv(norm_path, report):
        doc_id = report.aliases.get(row.filename, row.filename)
        doc = docs.get(doc_id)
        if doc is None:
            report.problem("missing_txt", norm_path, row.line, f"document {row.filename} is not in task1")
        elif not check_offsets(doc.text, row.start, row.end, row.text, norm_path, row.line, report):
            pass
        elif (row.start, row.end) in codes[doc_id]:
            report.problem("duplicate_id", norm_path, row.line, f"{row.filename} {row.start} {row.end} coded twice")
        elif not any((s.start, s.end) == (row.start, row.end) for s in doc.spans):
            report.problem("source_mismatch", norm_path, row.line,
                           f"{row.filename} has no NER span {row.start}-{row.end}")
        else:
            codes[doc_id][(row.start, row.end)] = row.code
            continue
        report.skip("rows")
    out = {}
    for doc_id, doc in docs.items():
        spans = []
        for span, number in zip(doc.spans, task1[doc_id].lines):
            code = codes[doc_id].get((span.start, span.end))
            if code is None:
                report.problem("missing_code", task1[doc_id].ann_path, number,
                               f"span {span.start}-{span.end} has no code in {norm_path.name}")
            spans.append(replace(span, code=code))
        out[doc_id] = replace(doc, spans=spans)
    return out


def read_meddoprof_set(set_dir: Path | str, report: CorpusReport | None = None) -> list[Document]:
    """A MEDDOPROF set folder (``task1/``, optional ``task2/`` and ``meddoprof-norm-*.tsv``).

    Span ``type`` from task1, ``cls`` from task2, ``code`` from NORM; documents sorted by task1 id,
    spans in task1 .ann order; ``label`` is None (MEDDOPROF has no document task).
    """
    report = report or CorpusReport()
    set_dir = Path(set_dir)
    task1 = {b.doc.id: b for b in read_brat_docs(set_dir / "task1", report)}
    if (set_dir / "task2").is_dir():
        docs = _match_task2(task1, read_brat_docs(set_dir / "task2", report), report)
    else:
        report.notes["no_task2"] += 1
        docs = {doc_id: b.doc for doc_id, b in task1.items()}
    norm_files = sorted(set_dir.glob("meddoprof-norm-*.tsv"))
    if len(norm_files) > 1:
        raise CorpusError(f"several NORM files {[p.name for p in norm_files]}", set_dir)
    if norm_files:
        docs = _attach_codes(docs, task1, norm_files[0], report)
    else:
        report.notes["no_norm_tsv"] += 1
    return [docs[doc_id] for doc_id in sorted(docs)]


def write_norm_tsv(docs: list[Document], path: Path | str) -> None:
    """The NORM TSV, quoted like the gold file: one row per span with a code, docs/spans in order.

    Raises ValueError for a span without a code (a NORM file row needs one).
    """
    rows = []
    for doc in docs:
        for span in doc.spans:
            if span.code is None:
                raise ValueError(f"document {doc.id}: span {span.start}-{span.end} has no code")
            rows.append((doc.id, doc.text[span.start:span.end], f"{span.start} {span.end}", span.code))
    write_quoted_tsv(path, NORM_HEADER, rows)


def write_meddoprof_outputs(docs: Sequence[Document], out_dir: Path | str) -> dict[str, int]:
    """``OUT/task1/<id>.ann`` (types), ``OUT/task2/<id>.ann`` (classes), ``OUT/norm.tsv``
    (codes), each brat folder with its ``<id>.txt`` (written byte for byte, BOM kept), so the
    folder reads back with the corpus reader. Spans lacking a class/code are left out of that
    task's file."""
    out_dir = Path(out_dir)
    counts = Counter()
    for doc in docs:
        write_brat(doc, out_dir / "task1", field="type")
        classed = replace(doc, spans=[s for s in doc.spans if s.cls is not None])
        write_brat(classed, out_dir / "task2", field="cls")
        counts["documents"] += 1
        counts["task1"] += len(doc.spans)
        counts["task2"] += len(classed.spans)
    coded = [replace(doc, spans=[s for s in doc.spans if s.code is not None]) for doc in docs]
    write_norm_tsv(coded, out_dir / "norm.tsv")
    counts["norm"] = sum(len(doc.spans) for doc in coded)
    return dict(counts)
