"""The span policy: type filter, exact-duplicate removal, and the one way overlaps are resolved.

A flat tag scheme (IO/BIO/BILOU) cannot hold two spans sharing a character (or a token), so
training data goes through :func:`apply_span_policy`; :func:`overlap_counts` only measures.
:func:`keep_outer` is the rule everywhere spans must not overlap — on characters here, on
tokens where tags are made (``tasks``, ``text.tags``), on a peer's tokens (``bench``): the
longest span wins, ties to the earliest, then to input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from profner_models.documents import Document, Span

OVERLAP_POLICIES = ("keep_outer", "keep_all")


def _contains(outer: Span, inner: Span) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def _dedupe(spans: list[Span]) -> tuple[list[Span], int]:
    seen: set[tuple[int, int, str]] = set()
    kept = []
    for span in spans:
        if span.key not in seen:
            seen.add(span.key)
            kept.append(span)
    return kept, len(spans) - len(kept)


def keep_outer(spans: list[Span], units: Callable[[Span], set[int]] | None = None
               ) -> tuple[list[Span], list[Span], list[Span]]:
    """Longest first (ties: earliest start, then input order); drop what shares a unit with a
    kept span. ``units`` maps a span to what it occupies (default: its characters; the
    indices of the tokens it touches where tags are made). Returns the kept spans and the
    dropped ones: nested in a kept span, or crossing one."""
    units = units or (lambda span: set(range(span.start, span.end)))
    order = sorted(range(len(spans)), key=lambda i: (-(spans[i].end - spans[i].start), spans[i].start, i))
    kept: list[Span] = []
    taken: dict[int, Span] = {}
    nested: list[Span] = []
    overlapping: list[Span] = []
    for i in order:
        span = spans[i]
        mine = units(span)
        hit = next((taken[u] for u in mine if u in taken), None)
        if hit is None:
            kept.append(span)
            taken.update(dict.fromkeys(mine, span))
        else:
            (nested if _contains(hit, span) else overlapping).append(span)
    return kept, nested, overlapping


def apply_span_policy(docs: Iterable[Document], types: Iterable[str] | None = None,
                      overlap: str = "keep_outer") -> tuple[list[Document], dict[str, int]]:
    """New documents (inputs untouched) whose spans pass the policy, sorted by (start, end).

    ``types``: keep only these entity types (None keeps all), applied first so a dropped type
    never hides a kept one. Exact duplicates (same start, end, type) keep one copy.
    ``overlap="keep_outer"`` keeps the outer (longest; ties: earliest) of nested or overlapping
    spans; ``"keep_all"`` leaves them. Counts: filtered_by_type, duplicates, nested_dropped,
    overlapping_dropped.
    """
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    wanted = None if types is None else set(types)
    counts = {"filtered_by_type": 0, "duplicates": 0, "nested_dropped": 0, "overlapping_dropped": 0}
    out = []
    for doc in docs:
        spans = [s for s in doc.spans if wanted is None or s.type in wanted]
        counts["filtered_by_type"] += len(doc.spans) - len(spans)
        spans, duplicates = _dedupe(spans)
        counts["duplicates"] += duplicates
        if overlap == "keep_outer":
            spans, nested, overlapping = keep_outer(spans)
            counts["nested_dropped"] += len(nested)
            counts["overlapping_dropped"] += len(overlapping)
        out.append(replace(doc, spans=sorted(spans, key=lambda s: (s.start, s.end, s.type))))
    return out, counts


def overlap_counts(docs: Iterable[Document]) -> dict[str, int]:
    """Extra exact-duplicate copies, nested pairs and crossing pairs among distinct spans."""
    counts = {"duplicates": 0, "nested_pairs": 0, "overlapping_pairs": 0}
    for doc in docs:
        spans, duplicates = _dedupe(list(doc.spans))
        counts["duplicates"] += duplicates
        for i, a in enumerate(spans):
            for b in spans[i + 1:]:
                if not _overlaps(a, b):
                    continue
                if _contains(a, b) or _contains(b, a):
                    counts["nested_pairs"] += 1
                else:
                    counts["overlapping_pairs"] += 1
    return counts
