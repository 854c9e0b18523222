"""Line-numbered reading of the corpora's TSV files (plain and quoted), header checked."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from profner_models.corpus.brat import read_text
from profner_models.corpus.report import CorpusReport


def _lines(path: Path, report: CorpusReport) -> list[str] | None:
    text = read_text(path, report)
    if text is None:
        report.skip("files")
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _header_ok(path: Path, found: list[str], header: tuple[str, ...], report: CorpusReport) -> bool:
    if found == list(header):
        return True
    report.problem("tsv_header", path, 1, f"header {found!r}, expected {list(header)!r}")
    report.skip("files")
    return False


def tsv_rows(path: Path, header: tuple[str, ...], report: CorpusReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a plain TSV after its header; the last field may hold tabs."""
    lines = _lines(path, report)
    if not lines or not _header_ok(path, lines[0].split("\t"), header, report):
        return
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t", len(header) - 1)
        if len(fields) != len(header):
            report.problem("tsv_syntax", path, number, f"{len(fields)} fields, expected {len(header)}")
            report.skip("rows")
            continue
        yield number, fields


def quoted_tsv_rows(path: Path, header: tuple[str, ...], report: CorpusReport) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a quoted TSV (``"a"\\t"b"``, quotes doubled inside) after its header."""
    lines = _lines(path, report)
    if not lines:
        return
    reader = csv.reader(lines, delimiter="\t", quotechar='"', strict=True)
    try:
        found = next(reader)
    except csv.Error as error:
        found = [f"<unparsable: {error}>"]
    if not _header_ok(path, found, header, report):
        return
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            report.problem("tsv_syntax", path, reader.line_num, f"bad quoting: {error}")
            report.skip("rows")
            continue
        if len(fields) != len(header):
            report.problem("tsv_syntax", path, reader.line_num, f"{len(fields)} fields, expected {len(header)}")
            report.skip("rows")
            continue
        yield reader.line_num, fields


def write_quoted_tsv(path: Path | str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Every field quoted, quotes doubled, LF line ends: the layout of the MEDDOPROF TSVs."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", quotechar='"', quoting=csv.QUOTE_ALL,
                            lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
