"""brat standoff: ``<id>.txt`` + ``<id>.ann`` pairs (T-lines only), and folders of plain .txt."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from profner_models.corpus.report import CorpusError, CorpusReport
from profner_models.documents import Document, Span

_T_LINE = re.compile(r"(T\d+)\t(\S+) (\d+) (\d+)\t(.*)")
_DISCONTINUOUS = re.compile(r"T\d+\t\S+ \d+ \d+(;\d+ \d+)+\t.*")
#: Valid brat lines that carry no entity span (attributes, relations, events, notes...).
_OTHER_ANNOTATIONS = ("A", "R", "E", "M", "N", "#", "*")


@dataclass
class BratDoc:
    """A document read from brat, with the .ann path and the line number of each span."""

    doc: Document
    ann_path: Path
    lines: list[int] = field(default_factory=list)


def read_text(path: Path, report: CorpusReport) -> str | None:
    """The file as ``str`` (strict UTF-8, BOM kept as char 0, newlines untouched); None if bad."""
    if path.is_dir():
        raise CorpusError("a folder where a file was expected", path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        report.problem("encoding", path, line, f"not UTF-8 at byte {error.start}: {error.reason}")
        return None


def span_text_matches(text: str, start: int, end: int, extraction: str) -> bool:
    """brat and our TSV writers put a space for a tab/newline inside the mention; accept both."""
    gold = text[start:end]
    return extraction == gold or extraction == one_line(gold)


def one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def check_offsets(text: str, start: int, end: int, extraction: str | None, path: Path, line: int,
                  report: CorpusReport) -> bool:
    """Report an offset outside the text or an extraction differing from the text; True if fine."""
    if not 0 <= start < end <= len(text):
        report.problem("offset_out_of_range", path, line,
                       f"span {start}-{end} outside the text (length {len(text)})")
        return False
    if extraction is not None and not span_text_matches(text, start, end, extraction):
        report.problem("extraction_mismatch", path, line,
                       f"{extraction!r} differs from text[{start}:{end}] = {text[start:end]!r}")
        return False
    return True


def parse_ann(ann_path: Path, text: str, report: CorpusReport) -> tuple[list[Span], list[int]]:
    """The T-line spans of one .ann (file order) and their line numbers; bad lines reported."""
    content = read_text(ann_path, report)
    if content is None:
        report.skip("files")
        return [], []
    spans: list[Span] = []
    lines: list[int] = []
    rows = content.split("\n")
    if rows[-1] == "":
        rows.pop()
    for number, line in enumerate(rows, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            report.notes["ann_blank_lines"] += 1
            continue
        match = _T_LINE.fullmatch(line)
        if match is None:
            if line.startswith(_OTHER_ANNOTATIONS):
                report.notes["ann_lines_ignored"] += 1
                continue
            detail = "discontinuous span not supported" if _DISCONTINUOUS.fullmatch(line) else \
                "not a brat T-line 'T<n>\\tTYPE start end\\ttext'"
            report.problem("ann_syntax", ann_path, number, f"{detail}: {line!r}")
            report.skip("spans")
            continue
        _, type_, start, end, extraction = match.groups()
        start, end = int(start), int(end)
        if not check_offsets(text, start, end, extraction, ann_path, number, report):
            report.skip("spans")
            continue
        spans.append(Span(start, end, type_, text[start:end]))
        lines.append(number)
    return spans, lines


def read_brat_docs(folder: Path, report: CorpusReport) -> list[BratDoc]:
    """Every txt+ann pair of ``folder`` (sorted by name), unpaired files reported and skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CorpusError("brat folder not found", folder)
    txts = {p.stem: p for p in folder.glob("*.txt")}
    anns = {p.stem: p for p in folder.glob("*.ann")}
    for stem in sorted(anns.keys() - txts.keys()):
        report.problem("missing_txt", anns[stem], None, f"{anns[stem].name} has no {stem}.txt")
        report.skip("documents")
    out: list[BratDoc] = []
    for stem in sorted(txts):
        if stem not in anns:
            report.problem("missing_ann", txts[stem], None, f"{txts[stem].name} has no {stem}.ann")
            report.skip("documents")
            continue
        text = read_text(txts[stem], report)
        if text is None:
            report.skip("documents")
            continue
        spans, lines = parse_ann(anns[stem], text, report)
        out.append(BratDoc(Document(stem, text, spans), anns[stem], lines))
    return out


def read_brat_dir(folder: Path | str, report: CorpusReport | None = None) -> list[Document]:
    """A plain brat folder as Documents (label None); strict unless ``report.lenient``."""
    return [b.doc for b in read_brat_docs(Path(folder), report or CorpusReport())]


def read_text_dir(folder: Path | str, report: CorpusReport | None = None) -> list[Document]:
    """A folder of .txt files (prediction input): one Document per file, no spans, id = stem."""
    report = report or CorpusReport()
    folder = Path(folder)
    docs = []
    for path in sorted(folder.glob("*.txt")):
        text = read_text(path, report)
        if text is None:
            report.skip("documents")
            continue
        docs.append(Document(path.stem, text, []))
    return docs


def write_brat(doc: Document, folder: Path | str, field: str = "type") -> Path:
    """Write ``<folder>/<id>.txt`` and ``<id>.ann``; returns the .ann path.

    T-lines are ``T<n>\\t<TYPE> <start> <end>\\t<text>``, numbered 1.. in span order (the gold
    numbering is not kept: a few gold files skip numbers). ``field="cls"`` writes the MEDDOPROF
    CLASS label (task2 layout) instead of the type. A tab/newline inside a mention is written as
    a space, as brat does. A document without spans gets an empty .ann, as in the gold folders.
    """
    if field not in ("type", "cls"):
        raise ValueError(f"field must be 'type' or 'cls', not {field!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, span in enumerate(doc.spans, start=1):
        label = getattr(span, field)
        if label is None:
            raise ValueError(f"document {doc.id}: span {span.start}-{span.end} has no {field}")
        lines.append(f"T{number}\t{label} {span.start} {span.end}\t"
                     f"{one_line(doc.text[span.start:span.end])}\n")
    (folder / f"{doc.id}.txt").write_bytes(doc.text.encode("utf-8"))
    ann_path = folder / f"{doc.id}.ann"
    ann_path.write_bytes("".join(lines).encode("utf-8"))
    return ann_path
