"""Tag schemes: encode/decode round trips, tolerant decoding, CRF constraints, and the
real-corpus alignment figures (spans -> tokens -> tags -> spans)."""

from __future__ import annotations

import random

import pytest

from profner_models.documents import Document, Span
from profner_models.text.tags import (
    SCHEMES,
    alignment_report,
    allowed_end_tags,
    allowed_start_tags,
    allowed_transitions,
    decode,
    encode,
    tag_set,
)
from profner_models.text.tokenize import tokenize

TEXT = "La enfermera jefa y el médico de familia están en paro."
SPANS = [Span(3, 17, "PROFESION", "enfermera jefa"), Span(23, 40, "PROFESION", "médico de familia"),
         Span(47, 54, "SITUACION_LABORAL", "en paro")]


def test_tag_set_order():
    assert tag_set(["P", "S", "P"], "IO") == ["O", "I-P", "I-S"]
    assert tag_set(["P", "S"], "BIO") == ["O", "B-P", "I-P", "B-S", "I-S"]
    assert tag_set(["P"], "BILOU") == ["O", "B-P", "I-P", "L-P", "U-P"]
    with pytest.raises(ValueError, match="scheme"):
        tag_set(["P"], "BIOES")


def test_encode_tags():
    tokens = tokenize(TEXT)
    assert encode(tokens, SPANS, "BIO") == ["O", "B-PROFESION", "I-PROFESION", "O", "O", "B-PROFESION",
                                            "I-PROFESION", "I-PROFESION", "O", "B-SITUACION_LABORAL",
                                            "I-SITUACION_LABORAL", "O"]
    bilou = encode(tokens, SPANS + [Span(0, 2, "X")], "BILOU")
    assert bilou[:3] == ["U-X", "B-PROFESION", "L-PROFESION"]
    assert bilou[5:8] == ["B-PROFESION", "I-PROFESION", "L-PROFESION"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip_gives_exact_spans(scheme):
    tokens = tokenize(TEXT)
    assert decode(tokens, encode(tokens, SPANS, scheme), scheme, TEXT) == SPANS


def test_encode_refuses_spans_sharing_a_token():
    tokens = tokenize(TEXT)
    with pytest.raises(ValueError, match="share token"):
        encode(tokens, [Span(3, 17, "PROFESION"), Span(3, 12, "PROFESION")], "BIO")


def _decode(tags: list[str], scheme: str) -> list[tuple[str, str]]:
    text = " ".join(f"w{i}" for i in range(len(tags)))
    return [(s.text, s.type) for s in decode(tokenize(text), tags, scheme, text)]


@pytest.mark.parametrize("scheme, tags, expected", [
    ("BIO", ["O", "I-X", "I-X", "O"], [("w1 w2", "X")]),  # I- after O starts an entity
    ("BIO", ["B-X", "I-Y", "I-Y"], [("w0", "X"), ("w1 w2", "Y")]),  # type change starts one
    ("BIO", ["B-X", "B-X", "I-X"], [("w0", "X"), ("w1 w2", "X")]),
    ("BILOU", ["L-X", "O"], [("w0", "X")]),  # L- with nothing open: one-token entity
    ("BILOU", ["B-X", "O", "I-X", "L-X"], [("w0", "X"), ("w2 w3", "X")]),  # B- then O: one token
    ("BILOU", ["B-X", "U-X", "L-X"], [("w0", "X"), ("w1", "X"), ("w2", "X")]),
    ("BILOU", ["B-X", "I-X", "L-X", "I-X"], [("w0 w1 w2", "X"), ("w3", "X")]),
    ("IO", ["I-X", "I-X", "O", "I-X", "I-Y"], [("w0 w1", "X"), ("w3", "X"), ("w4", "Y")]),
])
def test_tolerant_decoding(scheme, tags, expected):
    assert _decode(tags, scheme) == expected


def test_decode_rejects_bad_input():
    with pytest.raises(ValueError, match="not a BIO tag"):
        _decode(["U-X"], "BIO")
    with pytest.raises(ValueError, match="malformed"):
        _decode(["X"], "BIO")
    with pytest.raises(ValueError, match="tokens but"):
        decode(tokenize("a b"), ["O"], "BIO", "a b")


def _valid(path: list[int], transitions: set, start: list[int], end: list[int]) -> bool:
    return (not path or (path[0] in start and path[-1] in end)) and all(
        (a, b) in transitions for a, b in zip(path, path[1:]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_constraints_accept_every_encoding_and_reject_invalid_moves(scheme):
    tags = tag_set(["X", "Y"], scheme)
    index = {t: i for i, t in enumerate(tags)}
    transitions = set(allowed_transitions(tags, scheme))
    start, end = allowed_start_tags(tags, scheme), allowed_end_tags(tags, scheme)
    rng = random.Random(7)
    text = " ".join(["w"] * 12)
    tokens = tokenize(text)
    for _ in range(200):  # random flat span sets: their encodings must all be valid paths
        cuts = sorted(rng.sample(range(13), 6))
        spans = [Span(tokens[a].start, tokens[b - 1].end, rng.choice("XY"))
                 for a, b in zip(cuts[::2], cuts[1::2]) if b > a]
        path = [index[t] for t in encode(tokens, spans, scheme)]
        assert _valid(path, transitions, start, end)
    if scheme == "IO":
        assert len(transitions) == len(tags) ** 2
    if scheme == "BIO":
        assert (index["O"], index["I-X"]) not in transitions
        assert (index["B-X"], index["I-Y"]) not in transitions
        assert (index["B-X"], index["I-X"]) in transitions
        assert index["I-X"] not in start and index["I-X"] in end
    if scheme == "BILOU":
        assert (index["B-X"], index["O"]) not in transitions
        assert (index["I-X"], index["L-Y"]) not in transitions
        assert (index["L-X"], index["I-X"]) not in transitions
        assert (index["U-X"], index["B-Y"]) in transitions
        assert index["L-X"] not in start and index["B-X"] not in end


def test_alignment_report_names_the_failures():
    text = "días  twitter@s. La jefa de enfermería."
    doc = Document("d1", text, [
        Span(4, 15, "ACTIVIDAD", text[4:15]),  # starts with a space: cannot come back
        Span(20, 38, "PROFESION", text[20:38]),
        Span(28, 38, "PROFESION", text[28:38]),  # nested: a flat scheme holds only the outer
    ])
    report = alignment_report([doc], "BIO")
    assert (report.total, report.exact) == (3, 1)
    assert report.rate == pytest.approx(1 / 3)
    reasons = {f.reason: f for f in report.failures}
    assert reasons["boundary"].decoded[0].text == "twitter@s"
    assert reasons["overlap"].span.text == "enfermería"
    assert alignment_report([doc], "BIO", types=["PROFESION"]).total == 2
    assert alignment_report([], "BIO").rate == 1.0


# ---- real corpora -------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.slow
def test_profner_alignment(real_data_dir):
    """ProfNER train, span policy keep-outer (4 nested spans and 1 duplicate dropped): every
    PROFESION / SITUACION_LABORAL span comes back; of all 1,917 spans the one that does not is
    an ACTIVIDAD span annotated with a leading space (" twitter@s")."""
    from profner_models.corpus import SCORED_TYPES, load_corpus
    from profner_models.spans import apply_span_policy

    docs, _ = load_corpus(real_data_dir / "profner")
    outer, counts = apply_span_policy(docs)
    assert counts["duplicates"] + counts["nested_dropped"] + counts["overlapping_dropped"] == 5
    report = alignment_report(outer, "BIO")
    assert (report.total, report.exact) == (1917, 1916)
    [failure] = report.failures
    assert (failure.reason, failure.span.type, failure.span.text) == ("boundary", "ACTIVIDAD", " twitter@s")
    assert failure.decoded[0].text == "twitter@s"
    assert sum(s.type in SCORED_TYPES for d in outer for s in d.spans) == 1856  # all exact


@pytest.mark.realdata
@pytest.mark.slow
def test_meddoprof_alignment(real_data_dir):
    """MEDDOPROF task1 (all three types), keep-outer drops 24 of 2,778: the 2,754 left all
    come back exactly."""
    from profner_models.corpus import load_corpus
    from profner_models.spans import apply_span_policy

    docs, _ = load_corpus(real_data_dir / "meddoprof")
    outer, counts = apply_span_policy(docs)
    assert sum(len(d.spans) for d in docs) == 2778
    assert counts["duplicates"] + counts["nested_dropped"] + counts["overlapping_dropped"] == 24
    report = alignment_report(outer, "BIO")
    assert (report.total, report.exact, report.failures) == (2754, 2754, [])
