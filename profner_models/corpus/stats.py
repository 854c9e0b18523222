"""Corpus statistics for ``profner data stats``."""

from __future__ import annotations

from collections import Counter

from profner_models.corpus.report import CorpusReport
from profner_models.documents import Document
from profner_models.spans import overlap_counts
from profner_models.text.tags import alignment_report


def corpus_stats(docs: list[Document], report: CorpusReport) -> dict:
    """Documents, spans by type/class, doc labels, overlap counts, tokenizer alignment, warnings.

    ``alignment_exact_rate`` is the share of spans whose ends fall on token boundaries of the
    default tokenizer (``tags.alignment_report``), so a BIO tagging can represent them exactly.
    """
    alignment = alignment_report(docs)
    spans = [span for doc in docs for span in doc.spans]
    return {
        "path": report.path,
        "layout": report.layout,
        "documents": len(docs),
        "documents_with_spans": sum(1 for doc in docs if doc.spans),
        "spans": len(spans),
        "spans_by_type": dict(Counter(span.type for span in spans).most_common()),
        "spans_by_class": dict(Counter(span.cls for span in spans if span.cls).most_common()),
        "spans_with_code": sum(1 for span in spans if span.code is not None),
        "labels": {str(k): v for k, v in sorted(Counter(doc.label for doc in docs).items(), key=str)},
        **overlap_counts(docs),
        "alignment_total": alignment.total,
        "alignment_exact": alignment.exact,
        "alignment_exact_rate": alignment.rate,
        "warnings": dict(report.warnings),
        "unknown_labels": dict(report.unknown_labels),
        "skipped": dict(report.skipped),
        "notes": dict(report.notes),
    }


def format_stats(stats: dict) -> str:
    """A readable two-column table of :func:`corpus_stats`."""
    rows: list[tuple[str, str]] = []
    for key, value in stats.items():
        if isinstance(value, dict):
            rows.append((key, "" if value else "-"))
            rows.extend((f"  {name}", str(count)) for name, count in value.items())
        elif isinstance(value, float):
            rows.append((key, f"{value:.4f}"))
        else:
            rows.append((key, str(value)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
