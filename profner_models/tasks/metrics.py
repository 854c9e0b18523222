"""Scores as the ProfNER (SMM4H 2021 task 7) and MEDDOPROF (IberLEF 2021) evaluations define them.

Sources checked (2026-11), and what each one settles:

MEDDOPROF: the official library, TeMU-BSC/meddoprof-evaluation-library, ``src/main.py``,
``src/compute_metrics.py``, ``src/ann_parsing.py`` (read in full; the task page
temu.bsc.es/meddoprof/evaluation-library/ names it as the official scorer). Verified rules:

- M1 Micro-averaged P/R/F1 over the whole set (the per-document figures are only printed).
  F1 is 0 when P + R is 0.
- M2 NER and CLASS use the key ``(document, offset, label)``. CLASS is scored on the task2 brat
  files, whose label is the class, so a CLASS match needs the span and the class only, never
  the NER type. NORM uses ``(document, offset, code)``, with no type and no class.
- M3 Scored labels: NER ACTIVIDAD, PROFESION, SITUACION_LABORAL. CLASS SANITARIO, PACIENTE,
  FAMILIAR, OTROS. Other brat labels are dropped from both sides when the files are parsed.
- M4 Predictions for documents outside the gold standard are dropped. For NER and CLASS the
  gold documents are the ``.ann`` files of the gold folder, empty ones included, so a
  prediction in a gold document without mentions is a false positive. For NORM they are the
  filenames that appear in the gold TSV, so predictions for a document with no gold row are
  dropped.
- M5 NORM drops predicted rows whose code is not in ``meddoprof_valid_codes.tsv``. They are
  not counted as false positives.
- M6 Duplicates: predicted positives and gold positives are counted as distinct keys, but the
  true positives come from a merge of the raw rows. So TP = sum over the shared keys of
  (predicted rows) x (gold rows), and a duplicated matching row counts more than once. The
  official scorer warns "Metric greater than 1" when this pushes a score above 1. Only
  ``official_duplicates=True`` reproduces this; ``fp``/``fn`` are then
  ``predicted - tp`` / ``gold - tp`` and can be negative.
- M7 brat parsing (``profner evaluate`` does this, see :mod:`profner_models.tasks.scoring`):
  a ``.ann`` file with a line that does not have exactly 3 tab-separated fields (a blank line
  included), or with a discontinuous T-span, is skipped as a whole with a warning. T-lines
  named as arguments of an R-line are ignored. In NORM, the predicted filename, offset and
  code are stripped of surrounding whitespace. Here the filename and the code are stripped, and
  a padded offset is reported as an input error.
- M8 Empty predictions (after M4/M5) or an empty gold standard make the official scorer raise
  an error. Here they give 0.0.

ProfNER (7a/7b): the scorer ran on CodaLab (competition 28766). Its source was not found in any
stored repository, searched by name (TeMU-BSC, tonifuc3m, SMM4H, ProfNER repositories and the
participants' repositories such as argilla-io/profner and lasigeBioTM) and by code. The
definitions below come from the task's evaluation page (temu.bsc.es/smm4h-spanish/?p=3975) and
from the corpus README.txt (Zenodo 4563995):

- P1 7a: precision, recall and F1 of the positive class (label 1).
- P2 7b: a prediction is correct when its begin and end offsets and its label equal a gold
  annotation's. Only PROFESION and SITUACION_LABORAL are scored; other predicted or gold
  types are left out.

ProfNER rules that could not be checked, and what we do for them:

- 7a: a gold tweet with no prediction counts as predicted 0.
- 7a/7b: predictions for tweets that are not in the gold standard are left out and counted in
  ``ignored_ids``. The test set was released mixed with background tweets, so the scorer has
  to ignore these.
- 7b: micro averaging over mentions. An exact duplicate counts once (set semantics), unlike
  M6. We assume a gold tweet without entities (its ``id - - - -`` row) is still a gold tweet,
  so predictions in it are false positives.

Inputs: a list of :class:`Document` (gold label: ``doc.label``, or 1 when it has spans if the
label is None) or a mapping ``id -> label`` (7a) / ``id -> spans`` (span tasks).
Every scorer returns ``{"precision", "recall", "f1", "tp", "fp", "fn", "ignored_ids",
"per_type": {name: {"precision", "recall", "f1", "tp", "fp", "fn"}}}`` (7a: per_type empty).
The span scorers also give ``"duplicate_predictions"``: predicted spans that repeat a key.
NORM also gives ``"invalid_codes"``: predicted spans dropped by M5.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Union

from profner_models.documents import Document, Span

#: The entity types the official ProfNER 7b evaluation scores (P2).
SCORED_TYPES_7B = ("PROFESION", "SITUACION_LABORAL")
#: The labels the official MEDDOPROF scorer parses for NER and for CLASS (M3).
MEDDOPROF_NER_LABELS = ("ACTIVIDAD", "PROFESION", "SITUACION_LABORAL")
MEDDOPROF_CLASS_LABELS = ("SANITARIO", "PACIENTE", "FAMILIAR", "OTROS")

Labels = Union[Sequence[Document], Mapping[str, int]]
SpanSets = Union[Sequence[Document], Mapping[str, Iterable[Span]]]


def prf(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall, F1 and the counts; 0.0 where a denominator is 0."""
    predicted, gold = tp + fp, tp + fn
    precision = tp / predicted if predicted else 0.0
    recall = tp / gold if gold else 0.0
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
    """ProfNER 7a: P/R/F1 of label 1 over the gold tweet ids (P1)."""
    gold_labels, pred_labels = _labels(gold), _labels(pred)
    tp = fp = fn = 0
    for tweet_id, truth in gold_labels.items():
        guess = pred_labels.get(tweet_id, 0)
        tp += truth == 1 and guess == 1
        fp += truth != 1 and guess == 1
        fn += truth == 1 and guess != 1
    ignored = sum(1 for tweet_id in pred_labels if tweet_id not in gold_labels)
    return {**prf(tp, fp, fn), "ignored_ids": ignored, "per_type": {}}


def _counts(truth: Counter, guess: Counter, official_duplicates: bool) -> dict:
    """P/R/F1 of key multisets. Positives are distinct keys. TP is the number of shared keys,
    or, with ``official_duplicates``, the number of matching (predicted, gold) row pairs (M6)."""
    shared = truth.keys() & guess.keys()
    tp = sum(truth[k] * guess[k] for k in shared) if official_duplicates else len(shared)
    return prf(tp, len(guess) - tp, len(truth) - tp)


def score_spans(gold: SpanSets, pred: SpanSets, label: Callable[[Span], str | None],
                group: Callable[[Span], str | None] | None = None,
                keep: Callable[[Span], bool] | None = None,
                official_duplicates: bool = False) -> dict:
    """Micro P/R/F1 over exact keys ``(doc id, start, end, label(span))`` of the gold documents.

    ``keep`` filters spans on both sides. ``group`` names the per_type bucket of a span
    (default: its label). ``official_duplicates`` counts TP as in the MEDDOPROF scorer (M6)."""
    gold_spans, pred_spans = _spans(gold), _spans(pred)
    group = group or label

    def keys(spans_by_doc: dict[str, list[Span]]) -> tuple[Counter, dict[tuple, str]]:
        counted: Counter = Counter()
        groups: dict[tuple, str] = {}
        for doc_id in gold_spans:
            for s in spans_by_doc.get(doc_id, ()):
                if keep is None or keep(s):
                    key = (doc_id, s.start, s.end, label(s))
                    counted[key] += 1
                    groups.setdefault(key, str(group(s)))
        return counted, groups

    truth, truth_groups = keys(gold_spans)
    guess, guess_groups = keys(pred_spans)
    result = _counts(truth, guess, official_duplicates)
    groups = {**guess_groups, **truth_groups}
    result["per_type"] = {
        name: _counts(Counter({k: n for k, n in truth.items() if groups[k] == name}),
                      Counter({k: n for k, n in guess.items() if groups[k] == name}),
                      official_duplicates)
        for name in sorted(set(groups.values()))
    }
    result["ignored_ids"] = sum(1 for doc_id in pred_spans if doc_id not in gold_spans)
    result["duplicate_predictions"] = sum(guess.values()) - len(guess)
    return result


def score_7b(gold: SpanSets, pred: SpanSets, types: Iterable[str] = SCORED_TYPES_7B) -> dict:
    """ProfNER 7b: exact (tweet, start, end, type) matches over the scored ``types`` (P2)."""
    wanted = set(types)
    return score_spans(gold, pred, label=lambda s: s.type, keep=lambda s: s.type in wanted)


def score_meddoprof_ner(gold: SpanSets, pred: SpanSets) -> dict:
    """MEDDOPROF NER: (doc, start, end, type) keys of the official labels (M2, M3, M6)."""
    wanted = set(MEDDOPROF_NER_LABELS)
    return score_spans(gold, pred, label=lambda s: s.type, keep=lambda s: s.type in wanted,
                       official_duplicates=True)


def score_meddoprof_class(gold: SpanSets, pred: SpanSets) -> dict:
    """MEDDOPROF CLASS: (doc, start, end, class) keys, whatever the NER type (M2, M3, M6).
    Spans with no class, or a class outside the four official ones, are left out."""
    wanted = set(MEDDOPROF_CLASS_LABELS)
    return score_spans(gold, pred, label=lambda s: s.cls, keep=lambda s: s.cls in wanted,
                       official_duplicates=True)


def score_meddoprof_norm(gold: SpanSets, pred: SpanSets,
                         valid_codes: Collection[str] | None = None) -> dict:
    """MEDDOPROF NORM: (doc, start, end, code) keys (M2, M6); per_type by code system (``SCTID``
    for SNOMED CT, ``ESCO`` otherwise); spans with no code are left out. With ``valid_codes``,
    predicted spans in gold documents whose code is not in it are dropped and counted in
    ``invalid_codes`` (M5). The official scorer always applies its list."""
    pred_spans = _spans(pred)
    gold_ids = set(_spans(gold))
    invalid = 0
    if valid_codes is not None:
        kept: dict[str, list[Span]] = {}
        for doc_id, spans in pred_spans.items():
            kept[doc_id] = [s for s in spans if s.code is None or s.code in valid_codes]
            if doc_id in gold_ids:
                invalid += len(spans) - len(kept[doc_id])
        pred_spans = kept
    result = score_spans(gold, pred_spans, label=lambda s: s.code, group=_code_system,
                         keep=lambda s: s.code is not None, official_duplicates=True)
    result["invalid_codes"] = invalid
    return result


def _code_system(span: Span) -> str:
    return "SCTID" if (span.code or "").startswith("SCTID") else "ESCO"
