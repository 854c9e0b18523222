"""Tag schemes (IO, BIO, BILOU): spans <-> per-token tags, CRF constraints, alignment check.

A span covers every token it touches (a token that straddles a span boundary is taken whole,
so the decoded span grows to token boundaries; :func:`alignment_report` counts such cases).

Decoding is tolerant, so any tag sequence a model emits gives spans:

- ``I-X`` after ``O`` or after another type starts an entity of type X (BIO, BILOU);
- ``L-X`` with no open X entity is a one-token entity; ``B-X`` not followed by ``I-X``/``L-X``
  is a one-token entity (BILOU: as if ``U-X``);
- ``B-X`` or ``U-X`` always closes the open entity and starts a new one;
- IO cannot separate two adjacent entities of one type: consecutive ``I-X`` are one entity.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from profner_models.documents import Document, Span
from profner_models.spans import keep_outer
from profner_models.text.tokenize import Token, tokenize

SCHEMES = ("IO", "BIO", "BILOU")
_PREFIXES = {"IO": ("I",), "BIO": ("B", "I"), "BILOU": ("B", "I", "L", "U")}


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")


def _split(tag: str) -> tuple[str, str | None]:
    """``"B-PROFESION"`` -> ``("B", "PROFESION")``; ``"O"`` -> ``("O", None)``."""
    if tag == "O":
        return "O", None
    prefix, sep, type_ = tag.partition("-")
    if not sep or prefix not in "BILU" or len(prefix) != 1 or not type_:
        raise ValueError(f"malformed tag {tag!r}")
    return prefix, type_


def tag_set(types: Iterable[str], scheme: str) -> list[str]:
    """All tags: ``"O"`` first, then per type (in the given order, duplicates dropped) its
    prefixes in scheme order, e.g. BIO ``["O", "B-PROFESION", "I-PROFESION", ...]``."""
    _check_scheme(scheme)
    tags = ["O"]
    for type_ in dict.fromkeys(types):
        tags.extend(f"{prefix}-{type_}" for prefix in _PREFIXES[scheme])
    return tags


def token_range(tokens: Sequence[Token], span: Span, ends: Sequence[int] | None = None) -> range:
    """Indices of the tokens a span touches (tokens in text order; ``ends``: their ends, when
    the caller has them at hand)."""
    ends = ends if ends is not None else [t.end for t in tokens]
    first = last = bisect_right(ends, span.start)
    while last < len(tokens) and tokens[last].start < span.end:
        last += 1
    return range(first, last)


def encode(tokens: Sequence[Token], spans: Iterable[Span], scheme: str) -> list[str]:
    """One tag per token. Spans must not share a token (resolve nested/overlapping/duplicate
    spans first, e.g. ``spans.apply_span_policy``): raises ValueError naming both spans.
    A span that touches no token (whitespace only) gives no tag."""
    _check_scheme(scheme)
    tags = ["O"] * len(tokens)
    owner: dict[int, Span] = {}
    ends = [t.end for t in tokens]
    for span in spans:
        indices = token_range(tokens, span, ends)
        for i in indices:
            if i in owner:
                raise ValueError(f"spans {owner[i]} and {span} share token {tokens[i].text!r}; "
                                 "apply a span policy first")
            owner[i] = span
        for i in indices:
            tags[i] = f"{_prefix(scheme, i - indices.start, len(indices))}-{span.type}"
    return tags


def _prefix(scheme: str, position: int, length: int) -> str:
    if scheme == "IO":
        return "I"
    if scheme == "BIO":
        return "B" if position == 0 else "I"
    if length == 1:
        return "U"
    return "B" if position == 0 else "L" if position == length - 1 else "I"


def decode(tokens: Sequence[Token], tags: Sequence[str], scheme: str, text: str) -> list[Span]:
    """Spans from per-token tags (tolerant, see the module doc); ``text`` gives ``Span.text``."""
    _check_scheme(scheme)
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    valid = ("O",) + _PREFIXES[scheme]
    spans: list[Span] = []
    open_type: str | None = None
    open_start = open_end = 0

    def close() -> None:
        nonlocal open_type
        if open_type is not None:
            spans.append(Span(open_start, open_end, open_type, text[open_start:open_end]))
        open_type = None

    for token, tag in zip(tokens, tags):
        prefix, type_ = _split(tag)
        if prefix not in valid:
            raise ValueError(f"tag {tag!r} is not a {scheme} tag")
        if type_ == open_type and prefix in "IL":
            open_end = token.end
        else:
            close()
            if type_ is not None:
                open_type, open_start, open_end = type_, token.start, token.end
        if scheme == "BILOU" and prefix in "LU":
            close()
    close()
    return spans


def allowed_transitions(tags: Sequence[str], scheme: str) -> list[tuple[int, int]]:
    """(from, to) index pairs of ``tags`` that a valid sequence may contain (for a CRF)."""
    _check_scheme(scheme)
    return [(i, j) for i, a in enumerate(tags) for j, b in enumerate(tags) if _may_follow(a, b, scheme)]


def _may_follow(previous: str, tag: str, scheme: str) -> bool:
    prev_prefix, prev_type = _split(previous)
    prefix, type_ = _split(tag)
    if scheme == "IO":
        return True
    if scheme == "BIO":  # I-X only after B-X or I-X
        return prefix != "I" or prev_type == type_
    if prev_prefix in "BI":  # BILOU: an open entity goes on with I-X or ends with L-X
        return prefix in "IL" and prev_type == type_
    return prefix in "OBU"


def allowed_start_tags(tags: Sequence[str], scheme: str) -> list[int]:
    """Indices of the tags a valid sequence may start with."""
    _check_scheme(scheme)
    bad = {"IO": "", "BIO": "I", "BILOU": "IL"}[scheme]
    return [i for i, tag in enumerate(tags) if _split(tag)[0] not in bad]


def allowed_end_tags(tags: Sequence[str], scheme: str) -> list[int]:
    """Indices of the tags a valid sequence may end with."""
    _check_scheme(scheme)
    bad = "BI" if scheme == "BILOU" else ""
    return [i for i, tag in enumerate(tags) if _split(tag)[0] not in bad]


@dataclass(frozen=True)
class AlignmentFailure:
    """A gold span the round trip did not give back. ``reason``: ``boundary`` (a span end falls
    inside a token, or the span has surrounding whitespace), ``overlap`` (shares a token with an
    earlier span, incl. exact duplicates: resolve with a span policy), ``no_token``.
    ``decoded``: the spans the round trip produced over the same characters."""

    doc_id: str
    span: Span
    reason: str
    decoded: tuple[Span, ...] = ()


@dataclass
class AlignmentReport:
    total: int = 0
    exact: int = 0
    failures: list[AlignmentFailure] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Share of gold spans given back exactly (1.0 when there are none)."""
        return self.exact / self.total if self.total else 1.0


def alignment_report(docs: Iterable[Document], scheme: str = "BIO",
                     types: Iterable[str] | None = None) -> AlignmentReport:
    """Round trip spans -> tokens -> tags -> spans over ``docs`` (spans of ``types`` only, all
    when None) and count the gold spans given back exactly (start, end, type).

    Spans sharing a token with an earlier one (longest first, as ``keep_outer``) are not
    encoded and count as ``overlap`` failures, so pass documents through the span policy to
    measure the tokenizer alone."""
    _check_scheme(scheme)
    wanted = None if types is None else set(types)
    report = AlignmentReport()
    for doc in docs:
        gold = [s for s in doc.spans if wanted is None or s.type in wanted]
        report.total += len(gold)
        tokens = tokenize(doc.text)
        placed, rejected = flat_spans(tokens, gold)
        decoded = decode(tokens, encode(tokens, placed, scheme), scheme, doc.text)
        keys = {s.key for s in decoded}
        for span in placed:
            if span.key in keys:
                report.exact += 1
            else:
                near = tuple(d for d in decoded if d.start < span.end and span.start < d.end)
                reason = "boundary" if near else "no_token"
                report.failures.append(AlignmentFailure(doc.id, span, reason, near))
        report.failures.extend(AlignmentFailure(doc.id, span, "overlap") for span in rejected)
    return report


def flat_spans(tokens: Sequence[Token], spans: Sequence[Span]) -> tuple[list[Span], list[Span]]:
    """(spans a flat tag sequence holds, spans left out): of spans sharing a token the outer
    is kept (``spans.keep_outer`` on tokens); both lists in text order."""
    ends = [t.end for t in tokens]
    kept, nested, crossing = keep_outer(list(spans), units=lambda s: set(token_range(tokens, s, ends)))
    return sorted(kept), sorted(nested + crossing)
