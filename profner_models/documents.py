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


@dataclass
class Prediction:
    """One text's label and probability (ProfNER 7a) and its entities (offsets into the text
    given; MEDDOPROF entities carry ``cls`` and ``code``)."""

    label: int
    probability: float
    entities: list[Span] = field(default_factory=list)
    head_label: int | None = None
    """The classifier head's own label (before ``label_from_entities``)."""

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "probability": self.probability,
            "entities": [{"start": s.start, "end": s.end, "type": s.type, "text": s.text,
                          **({"class": s.cls, "code": s.code}
                             if s.cls is not None or s.code is not None else {})}
                         for s in self.entities],
        }

    def as_document(self, doc_id: str, text: str) -> Document:
        """This prediction as a document (scored against gold, or used as gold)."""
        return Document(doc_id, text, list(self.entities), self.label)
