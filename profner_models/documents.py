"""The one document model shared by ProfNER and MEDDOPROF.

Offsets are characters of the Python ``str`` read with ``encoding="utf-8"`` (a BOM is kept
as character 0), end exclusive, everywhere: corpus, tags, predictions, server answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Span:
    """One entity mention. ``cls`` is the MEDDOPROF CLASS label, ``code`` its NORM code."""

    start: int
    end: int
    type: str
    text: str = ""
    cls: str | None = None
    code: str | None = None

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.type)


@dataclass
class Document:
    """A tweet or a clinical case: text, id, gold or predicted spans, doc-level label (7a)."""

    id: str
    text: str
    spans: list[Span] = field(default_factory=list)
    label: int | None = None
