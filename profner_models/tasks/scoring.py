"""Scores of prediction files against gold files, read as the official evaluations read them.

Inputs by task:
- ``7a``: subtask-1 TSVs (``tweet_id  label``, with header);
- ``7b``: subtask-2 TSVs (``tweet_id begin end type extraction``; ``id - - - -`` rows skipped)
  or brat folders (``<tweet_id>.txt`` + ``.ann``, as the corpus ships its gold);
- ``meddoprof-ner`` / ``meddoprof-class``: brat folders (task1 / task2 layout; in task2 the brat
  label is the class). Only the ``.ann`` files are read, by the official parsing rules (M7 in
  :mod:`profner_models.tasks.metrics`): a file with a malformed line is skipped with a warning.
- ``meddoprof-norm``: NORM TSVs and the valid codes TSV (the official scorer always applies
  one, so leaving it out is reported under ``skipped``).
"""

from __future__ import annotations

from pathlib import Path

from profner_models.corpus import (
    CorpusError,
    read_7a_tsv,
    read_7b_tsv,
    read_brat_dir,
    read_norm_tsv,
    read_valid_codes,
)
from profner_models.documents import Span
from profner_models.tasks import metrics


def read_ann_folder(folder: Path, labels: tuple[str, ...], as_class: bool,
                    warnings: list[str]) -> dict:
    """``doc id -> spans`` of every ``<id>.ann`` in ``folder``, parsed as the official MEDDOPROF
    scorer parses them (TeMU-BSC/meddoprof-evaluation-library, src/ann_parsing.py): a file
    with a line that does not have exactly 3 tab-separated fields, or with a discontinuous
    span, is skipped (one message in ``warnings``). T-lines that are arguments of an R-line
    are dropped, and so are labels outside ``labels``. ``as_class`` puts the label in
    ``Span.cls``."""
    if not folder.is_dir():
        raise CorpusError("brat folder not found", folder)
    out: dict = {}
    for path in sorted(folder.glob("*.ann")):
        try:
            content = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorpusError(f"not UTF-8 at byte {error.start}", path) from error
        lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":  # as readlines(): a final newline ends the last line
            lines.pop()
        rows = [line.split("\t") for line in lines]
        bad = next((n for n, fields in enumerate(rows, start=1) if len(fields) != 3
                    or (fields[0].startswith("T") and ";" in fields[1].partition(" ")[2])), None)
        out[path.stem] = []
        if bad is not None:
            warnings.append(f"{path}:{bad}: not 'ID<TAB>LABEL start end<TAB>text' or discontinuous;"
                            " the official scorer skips this whole file")
            continue
        related = {arg.split(":", 1)[-1] for fields in rows if fields[0].startswith("R")
                   for arg in fields[1].split(" ")[1:3]}
        for number, (mark, middle, text) in enumerate(rows, start=1):
            label, *offsets = middle.split(" ")
            if not mark.startswith("T") or mark in related or label not in labels:
                continue
            if len(offsets) != 2 or not all(o.isdigit() for o in offsets):
                raise CorpusError(f"offsets {' '.join(offsets)!r} are not 'start end'", path, number)
            span = Span(int(offsets[0]), int(offsets[1]), "" if as_class else label, text.strip(),
                        cls=label if as_class else None)
            out[path.stem].append(span)
    return out


def _labels_7a(path: Path) -> dict[str, int]:
    if path.is_dir():
        raise CorpusError("7a reads a subtask-1 TSV (tweet_id, label), not a folder", path)
    return read_7a_tsv(path)


def _spans_7b(path: Path) -> dict[str, list[Span]]:
    """A subtask-2 TSV, or a brat folder: every ``.txt`` a tweet, its ``.ann`` spans."""
    if path.is_dir():
        return {doc.id: list(doc.spans) for doc in read_brat_dir(path)}
    return read_7b_tsv(path)


def _norm_spans(path: Path, strip: bool) -> dict:
    """``filename -> spans`` of a NORM TSV; ``strip`` trims filename and code (the official
    scorer does this to the predictions only)."""
    spans: dict = {}
    for row in read_norm_tsv(path):
        name, code = (row.filename.strip(), row.code.strip()) if strip else (row.filename, row.code)
        spans.setdefault(name, []).append(Span(row.start, row.end, "", row.text, code=code))
    return spans


def score(task: str, gold: Path, pred: Path, valid_codes: Path | None = None) -> dict:
    """Read both inputs for ``task`` and score them (see :mod:`profner_models.tasks.metrics`).

    ``"skipped"`` lists what the official scorer would skip or check that this run did not."""
    skipped: list[str] = []
    if task == "7a":
        result = metrics.score_7a(_labels_7a(gold), _labels_7a(pred))
    elif task == "7b":
        result = metrics.score_7b(_spans_7b(gold), _spans_7b(pred))
    elif task in ("meddoprof-ner", "meddoprof-class"):
        as_class = task == "meddoprof-class"
        labels = metrics.MEDDOPROF_CLASS_LABELS if as_class else metrics.MEDDOPROF_NER_LABELS
        scorer = metrics.score_meddoprof_class if as_class else metrics.score_meddoprof_ner
        result = scorer(read_ann_folder(gold, labels, as_class, skipped),
                        read_ann_folder(pred, labels, as_class, skipped))
    elif task == "meddoprof-norm":
        if valid_codes is None:
            skipped.append("no --valid-codes: predicted codes were not checked against "
                           "meddoprof_valid_codes.tsv (the official scorer drops the others)")
        codes = None if valid_codes is None else read_valid_codes(valid_codes)
        result = metrics.score_meddoprof_norm(_norm_spans(gold, False), _norm_spans(pred, True),
                                              valid_codes=codes)
    else:
        raise ValueError(f"unknown task {task!r}")
    return {**result, "skipped": skipped}
