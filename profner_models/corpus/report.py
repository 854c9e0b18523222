"""Problems found while reading a corpus: raised (strict) or counted (lenient).

Every reader takes a :class:`CorpusReport`. ``report.problem(kind, path, line, message)``
raises :class:`CorpusError` in strict mode; in lenient mode it records the warning (counted by
kind, message kept) and the caller skips only the bad item, counting what it skipped with
``report.skip``. Nothing is dropped without a count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

#: Problem kinds a reader can report.
KINDS = (
    "ann_syntax",  # an .ann line that does not parse (or a discontinuous span)
    "offset_out_of_range",  # start/end outside the text, or start >= end
    "extraction_mismatch",  # ann text / tsv extraction / NORM text differs from text[start:end]
    "missing_ann",  # .txt without .ann
    "missing_txt",  # .ann (or a tsv id) without .txt
    "tsv_header",  # wrong TSV header
    "tsv_syntax",  # a TSV row with the wrong number of fields or a bad value
    "encoding",  # not UTF-8
    "duplicate_id",  # the same document id (or NORM row) twice
    "source_mismatch",  # brat vs tsv, task1 vs task2, NORM vs brat disagree
    "missing_label",  # a document with no 7a label row
    "missing_code",  # a MEDDOPROF mention with no NORM code
)


class CorpusError(ValueError):
    """Bad corpus input; the message names the file and the line (1-based) when there is one."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None,
                 kind: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.line = line
        self.kind = kind
        super().__init__(f"{where(path, line)}: {message}" if path is not None else message)


def where(path: Path | str | None, line: int | None = None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


@dataclass
class CorpusReport:
    """What a load found: layout, sizes, warnings by kind, what was skipped, informational notes."""

    path: str = ""
    layout: str = ""
    lenient: bool = False
    documents: int = 0
    spans: int = 0
    warnings: Counter = field(default_factory=Counter)  # kind -> count
    messages: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # documents / spans / rows / files -> count
    notes: Counter = field(default_factory=Counter)  # e.g. docs_matched_by_text, empty_tsv_rows
    aliases: dict[str, str] = field(default_factory=dict)  # other-source doc name -> doc id
    unknown_labels: Counter = field(default_factory=Counter)  # "type:X" / "cls:Y" -> spans

    def problem(self, kind: str, path: Path | str, line: int | None, message: str) -> None:
        """Raise in strict mode; record a warning in lenient mode (the caller skips the item)."""
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        if not self.lenient:
            raise CorpusError(message, path, line, kind)
        self.warnings[kind] += 1
        self.messages.append(f"{where(path, line)}: [{kind}] {message}")

    def skip(self, what: str, n: int = 1) -> None:
        self.skipped[what] += n

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "layout": self.layout,
            "lenient": self.lenient,
            "documents": self.documents,
            "spans": self.spans,
            "warnings": dict(self.warnings),
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "aliases": dict(self.aliases),
            "unknown_labels": dict(self.unknown_labels),
            "messages": list(self.messages),
        }
