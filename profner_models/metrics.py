"""Scores as the ProfNER (SMM4H 2021 task 7) and MEDDOPROF (IberLEF 2021) evaluations define them.

- 7a: precision, recall and F1 of the positive class (label 1), by tweet id.
- 7b: strict micro P/R/F1 over exact ``(tweet id, start, end, type)`` matches of the scored
  types (PROFESION, SITUACION_LABORAL), plus the same per type.
- MEDDOPROF NER / CLASS / NORM: strict micro over ``(doc, start, end, X)`` with X the entity
  type, the class (PACIENTE, FAMILIAR, SANITARIO, OTROS) or the normalisation code.

Conventions (the same in every scorer here):
- A gold id with no prediction counts as predicted 0 / no spans.
- A prediction for an id the gold does not know is left out of the scores and counted in
  ``"ignored_ids"`` (the official scorers read the predictions of the gold documents only;
  ``profner evaluate`` prints a warning when this count is not 0).
- Duplicate predictions (the same key twice) count once; duplicate gold spans count once.
- A zero denominator gives 0.0, never an error (empty predictions, empty gold).

Inputs: a list of :class:`Document` (gold label: ``doc.label``, or 1 when it has spans if the
label is None) or a mapping ``id -> label`` (7a) / ``id -> spans`` (span tasks).
Every scorer returns ``{"precision", "recall", "f1", "tp", "fp", "fn", "ignored_ids",
"per_type": {name: {"precision", "recall", "f1", "tp", "fp", "fn"}}}`` (7a: per_type empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Union

from profner_models.documents import Document, Span

#: The entity types the official ProfNER 7b evaluation scores.
SCORED_TYPES_7B = ("PROFESION", "SITUACION_LABORAL")

Labels = Union[Sequence[Document], Mapping[str, int]]
SpanSets = Union[Sequence[Document], Mapping[str, Iterable[Span]]]


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall, F1 and the counts; 0.0 where a denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def _labels(data: Labels) -> dict[str, int]:
    if isinstance(data, Mapping):
        return {str(k): int(v) for k, v in data.items()}
    return {d.id: int(d.label) if d.label is not None else int(bool(d.spans)) for d in data}


def _spans(data: SpanSets) -> dict[str, list[Span]]:
    if isinstance(data, Mapping):
        return {str(k): list(v) for k, v in data.items()}
    out: dict[str, list[Span]] = {}
    for doc in data:
        out.setdefault(doc.id, []).extend(doc.spans)
    return out


def score_7a(gold: Labels, pred: Labels) -> dict:
    """ProfNER 7a: P/R/F1 of label 1 over the gold tweet ids."""
    gold_labels, pred_labels = _labels(gold), _labels(pred)
    tp = fp = fn = 0
    for tweet_id, truth in gold_labels.items():
        guess = pred_labels.get(tweet_id, 0)
        tp += truth == 1 and guess == 1
        fp += truth != 1 and guess == 1
        fn += truth == 1 and guess != 1
    ignored = sum(1 for tweet_id in pred_labels if tweet_id not in gold_labels)
    return {**prf(tp, fp, fn), "ignored_ids": ignored, "per_type": {}}


def score_spans(gold: SpanSets, pred: SpanSets, label: Callable[[Span], str | None],
                group: Callable[[Span], str | None] | None = None,
                keep: Callable[[Span], bool] | None = None) -> dict:
    """Strict micro P/R/F1 over keys ``(doc id, start, end, label(span))``.

    ``keep`` filters spans on both sides; ``group`` names the per_type bucket of a span
    (default: its label)."""
    gold_spans, pred_spans = _spans(gold), _spans(pred)
    group = group or label

    def keys(spans_by_doc: dict[str, list[Span]], ids: Iterable[str]) -> dict[tuple, str | None]:
        return {(doc_id, s.start, s.end, label(s)): group(s)
                for doc_id in ids for s in spans_by_doc.get(doc_id, ())
                if keep is None or keep(s)}

    ids = list(gold_spans)
    truth, guess = keys(gold_spans, ids), keys(pred_spans, ids)
    hits = truth.keys() & guess.keys()
    result = prf(len(hits), len(guess) - len(hits), len(truth) - len(hits))
    names = sorted({str(n) for n in (*truth.values(), *guess.values())})
    result["per_type"] = {
        name: prf(sum(1 for k in hits if str(truth[k]) == name),
                  sum(1 for k, n in guess.items() if str(n) == name and k not in hits),
                  sum(1 for k, n in truth.items() if str(n) == name and k not in hits))
        for name in names
    }
    result["ignored_ids"] = sum(1 for doc_id in pred_spans if doc_id not in gold_spans)
    return result


def score_7b(gold: SpanSets, pred: SpanSets, types: Iterable[str] = SCORED_TYPES_7B) -> dict:
    """ProfNER 7b: exact (tweet, start, end, type) matches over the scored ``types``."""
    wanted = set(types)
    return score_spans(gold, pred, label=lambda s: s.type, keep=lambda s: s.type in wanted)


def score_meddoprof_ner(gold: SpanSets, pred: SpanSets, types: Iterable[str] | None = None) -> dict:
    """MEDDOPROF NER: exact (doc, start, end, type) matches (all types unless ``types``)."""
    wanted = None if types is None else set(types)
    return score_spans(gold, pred, label=lambda s: s.type,
                       keep=None if wanted is None else (lambda s: s.type in wanted))


def score_meddoprof_class(gold: SpanSets, pred: SpanSets) -> dict:
    """MEDDOPROF CLASS: exact (doc, start, end, class) matches; a span with no class on either
    side is left out (gold has a class on every span)."""
    return score_spans(gold, pred, label=lambda s: s.cls, keep=lambda s: s.cls is not None)


def score_meddoprof_norm(gold: SpanSets, pred: SpanSets) -> dict:
    """MEDDOPROF NORM: exact (doc, start, end, code) matches; per_type by code system
    (``SCTID`` for SNOMED CT, ``ESCO`` otherwise); spans with no code are left out."""
    return score_spans(gold, pred, label=lambda s: s.code, group=_code_system,
                       keep=lambda s: s.code is not None)


def _code_system(span: Span) -> str:
    return "SCTID" if (span.code or "").startswith("SCTID") else "ESCO"
