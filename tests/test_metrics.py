"""Official-style scores on hand-made cases (perfect, empty, off-by-one, wrong type, duplicates)."""

from __future__ import annotations

import pytest

from profner_models.documents import Document, Span
from profner_models.tasks.metrics import (
    prf,
    score_7a,
    score_7b,
    score_meddoprof_class,
    score_meddoprof_ner,
    score_meddoprof_norm,
)

P, S = "PROFESION", "SITUACION_LABORAL"
GOLD = {"t1": [Span(0, 7, P), Span(10, 17, S)], "t2": [Span(3, 9, P)], "t3": []}


def test_prf_zero_denominators():
    assert prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 0}
    assert prf(1, 1, 2)["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_7b_perfect():
    result = score_7b(GOLD, GOLD)
    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 1.0, 1.0)
    assert (result["tp"], result["fp"], result["fn"]) == (3, 0, 0)
    assert result["per_type"][P]["tp"] == 2 and result["per_type"][S]["tp"] == 1


def test_7b_empty_prediction_and_empty_gold():
    empty = score_7b(GOLD, {})
    assert (empty["f1"], empty["tp"], empty["fn"], empty["fp"]) == (0.0, 0, 3, 0)
    no_gold = score_7b({"t1": []}, {"t1": [Span(0, 3, P)]})
    assert (no_gold["precision"], no_gold["recall"], no_gold["f1"], no_gold["fp"]) == (0.0, 0.0, 0.0, 1)
    assert score_7b({}, {})["f1"] == 0.0


def test_7b_off_by_one_and_wrong_type_are_errors():
    pred = {"t1": [Span(0, 8, P), Span(10, 17, P)], "t2": [Span(3, 9, P)]}
    result = score_7b(GOLD, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 2, 2)
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert (result["per_type"][P]["fp"], result["per_type"][S]["fn"]) == (2, 1)


def test_7b_duplicates_count_once_and_unscored_types_are_ignored():
    pred = {"t1": [Span(0, 7, P), Span(0, 7, P), Span(10, 17, S), Span(20, 25, "ACTIVIDAD")],
            "t2": [Span(3, 9, P)], "unknown": [Span(0, 1, P)]}
    result = score_7b(GOLD, pred)
    assert (result["tp"], result["fp"], result["fn"], result["f1"]) == (3, 0, 0, 1.0)
    assert result["ignored_ids"] == 1  # prediction for a tweet the gold does not have
    assert "ACTIVIDAD" not in result["per_type"]
    assert score_7b(GOLD, pred, types=[P, S, "ACTIVIDAD"])["fp"] == 1


def test_7b_accepts_documents():
    gold = [Document("t1", "x" * 20, GOLD["t1"], 1), Document("t3", "y", [], 0)]
    pred = [Document("t1", "x" * 20, GOLD["t1"][:1], 1)]
    result = score_7b(gold, pred)
    assert (result["tp"], result["fn"]) == (1, 1)


def test_7a_positive_class_missing_and_unknown_ids():
    gold = {"a": 1, "b": 1, "c": 0, "d": 0, "e": 1}
    pred = {"a": 1, "b": 0, "c": 1, "d": 0, "zzz": 1}  # "e" missing: predicted 0
    result = score_7a(gold, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 2)
    assert result["precision"] == 0.5 and result["recall"] == pytest.approx(1 / 3)
    assert result["ignored_ids"] == 1
    assert score_7a(gold, gold)["f1"] == 1.0
    assert score_7a(gold, {})["f1"] == 0.0 and score_7a({}, {})["f1"] == 0.0


def test_7a_documents_label_or_spans():
    gold = [Document("a", "", [], 1), Document("b", "", [], 0)]
    pred = [Document("a", "", [Span(0, 1, P)], None), Document("b", "", [], None)]
    assert score_7a(gold, pred)["f1"] == 1.0


def test_meddoprof_ner_class_norm():
    # M2: NER key has the type, CLASS the class, NORM the code (src/compute_metrics.py)
    gold = {"doc": [Span(0, 7, P, cls="PACIENTE", code="2211.1"),
                    Span(20, 30, S, cls="FAMILIAR", code="SCTID: 73438004")]}
    same_spans = {"doc": [Span(0, 7, P, cls="SANITARIO", code="2211.1"),
                          Span(20, 30, "ACTIVIDAD", cls="FAMILIAR", code=None)]}
    ner = score_meddoprof_ner(gold, same_spans)
    assert (ner["tp"], ner["fp"], ner["fn"]) == (1, 1, 1)
    assert set(ner["per_type"]) == {P, S, "ACTIVIDAD"}
    cls = score_meddoprof_class(gold, same_spans)
    assert (cls["tp"], cls["fp"], cls["fn"]) == (1, 1, 1)
    assert cls["per_type"]["FAMILIAR"]["tp"] == 1 and cls["per_type"]["PACIENTE"]["fn"] == 1
    norm = score_meddoprof_norm(gold, same_spans)
    assert (norm["tp"], norm["fp"], norm["fn"]) == (1, 0, 1)
    assert norm["per_type"]["SCTID"]["fn"] == 1 and norm["per_type"]["ESCO"]["tp"] == 1
    assert score_meddoprof_ner(gold, gold)["f1"] == 1.0
    assert score_meddoprof_norm(gold, {})["recall"] == 0.0


# ---- official MEDDOPROF rules (TeMU-BSC/meddoprof-evaluation-library, src/compute_metrics.py
# and src/main.py; rule numbers as in the profner_models.tasks.metrics docstring) -----------------
A, B = Span(0, 7, P, cls="PACIENTE", code="2211.1"), Span(20, 30, S, cls="OTROS", code="SCTID: 73438004")


def test_meddoprof_duplicates_count_each_matching_pair():
    # M6 (src/compute_metrics.py): positives are distinct (doc, offset, label) keys, TP comes
    # from merging the raw rows, so a duplicated matching prediction is two true positives.
    twice = score_meddoprof_ner({"d": [A]}, {"d": [A, A]})
    assert (twice["tp"], twice["precision"], twice["recall"]) == (2, 2.0, 2.0)
    assert twice["duplicate_predictions"] == 1
    gold_twice = score_meddoprof_ner({"d": [A, A, B]}, {"d": [A]})
    assert (gold_twice["tp"], gold_twice["precision"], gold_twice["recall"]) == (2, 2.0, 1.0)
    # a duplicated wrong prediction is one false positive (distinct predicted keys)
    wrong = score_meddoprof_ner({"d": [A]}, {"d": [A, B, B]})
    assert (wrong["tp"], wrong["fp"], wrong["precision"]) == (1, 1, 0.5)
    # the same holds for CLASS and NORM
    assert score_meddoprof_class({"d": [A]}, {"d": [A, A]})["tp"] == 2
    assert score_meddoprof_norm({"d": [A]}, {"d": [A, A]})["tp"] == 2


def test_meddoprof_ner_scores_only_the_official_labels():
    # M3 (src/main.py): NER parses ACTIVIDAD, PROFESION, SITUACION_LABORAL only; others vanish.
    gold = {"d": [A, Span(40, 45, "ACTIVIDAD"), Span(50, 55, "FIGURATIVA")]}
    pred = {"d": [A, Span(40, 45, "ACTIVIDAD"), Span(60, 65, "OTRA")]}
    result = score_meddoprof_ner(gold, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 0)
    assert set(result["per_type"]) == {P, "ACTIVIDAD"}


def test_meddoprof_class_is_span_and_class_only():
    # M2 (src/compute_metrics.py + task2 brat): the key is (doc, offset, class); the NER type
    # plays no part. M3: only SANITARIO, PACIENTE, FAMILIAR, OTROS are parsed.
    pred = {"d": [Span(0, 7, "ACTIVIDAD", cls="PACIENTE"), Span(20, 30, S, cls="PROFESION"),
                  Span(20, 30, S, cls=None)]}
    result = score_meddoprof_class({"d": [A, B]}, pred)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 0, 1)
    assert result["per_type"]["OTROS"]["fn"] == 1 and "PROFESION" not in result["per_type"]


def test_meddoprof_norm_drops_invalid_codes_and_unknown_documents():
    # M5 (src/main.py): predicted codes outside meddoprof_valid_codes.tsv are removed before
    # scoring, so they are not false positives. M4: documents not in the gold TSV are dropped.
    valid = {"2211.1", "SCTID: 73438004", "9999"}
    pred = {"d": [A, Span(20, 30, S, code="not-a-code"), Span(60, 70, S, code="9999")],
            "other": [Span(0, 7, P, code="2211.1")]}
    result = score_meddoprof_norm({"d": [A, B]}, pred, valid_codes=valid)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1)
    assert (result["invalid_codes"], result["ignored_ids"]) == (1, 1)
    # without the list the invalid code is one more false positive
    assert score_meddoprof_norm({"d": [A, B]}, pred)["fp"] == 2
    # the key is (doc, offset, code): type and class do not matter
    other_type = {"d": [Span(0, 7, "ACTIVIDAD", cls="FAMILIAR", code="2211.1")]}
    assert score_meddoprof_norm({"d": [A]}, other_type)["f1"] == 1.0


def test_meddoprof_micro_average_not_per_document_mean():
    # M1 (src/compute_metrics.py): P = TP / predicted positives over all documents.
    gold = {"d1": [A], "d2": [Span(i, i + 1, P) for i in range(9)]}
    pred = {"d1": [A], "d2": [Span(i, i + 1, P) for i in range(0, 18, 2)]}
    result = score_meddoprof_ner(gold, pred)
    assert (result["tp"], result["precision"]) == (6, 0.6)  # a mean of per-document precision: 0.78


def test_7b_duplicates_count_once_unlike_meddoprof():
    # ProfNER 7b scorer source not found (see metrics docstring): set semantics kept.
    result = score_7b({"t": [Span(0, 7, P)]}, {"t": [Span(0, 7, P), Span(0, 7, P)]})
    assert (result["tp"], result["precision"], result["duplicate_predictions"]) == (1, 1.0, 1)
