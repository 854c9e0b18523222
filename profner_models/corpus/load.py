"""One entry point for every layout: ProfNER root, MEDDOPROF root, brat folder, .txt folder."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from profner_models.corpus.brat import read_brat_dir, read_text_dir
from profner_models.corpus.meddoprof import CLASSES as MEDDOPROF_CLASSES
from profner_models.corpus.meddoprof import TYPES as MEDDOPROF_TYPES
from profner_models.corpus.meddoprof import read_meddoprof_set
from profner_models.corpus.profner import TYPES as PROFNER_TYPES
from profner_models.corpus.profner import read_profner
from profner_models.corpus.report import CorpusError, CorpusReport
from profner_models.documents import Document

#: The span labels each corpus's guidelines define; any other is a misspelling no model trains
#: on or is scored on.
KNOWN_LABELS = {"profner": {"type": PROFNER_TYPES},
                "meddoprof": {"type": MEDDOPROF_TYPES, "cls": MEDDOPROF_CLASSES}}
KNOWN_LABELS["meddoprof_set"] = KNOWN_LABELS["meddoprof"]
log = logging.getLogger(__name__)


def detect_layout(path: Path | str) -> str:
    """``profner`` (holds subtask-1/ or subtask-2/), ``meddoprof`` (holds meddoprof-*-set/),
    ``meddoprof_set`` (holds task1/), ``brat`` (.ann files) or ``text`` (.txt files only)."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError("not a corpus folder", path)
    if (path / "subtask-1").is_dir() or (path / "subtask-2").is_dir():
        return "profner"
    if any(p.is_dir() for p in path.glob("meddoprof-*-set")):
        return "meddoprof"
    if (path / "task1").is_dir():
        return "meddoprof_set"
    if any(path.glob("*.ann")):
        return "brat"
    if any(path.glob("*.txt")):
        return "text"
    subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
    hint = f" (pick one of its folders: {', '.join(subdirs)})" if subdirs else ""
    raise CorpusError(f"cannot tell the corpus layout{hint}", path)


def meddoprof_set_dir(root: Path, split: str) -> Path:
    """``train`` -> ``meddoprof-training-set``, any other split -> ``meddoprof-<split>-set``."""
    set_dir = root / f"meddoprof-{'training' if split == 'train' else split}-set"
    if not set_dir.is_dir():
        found = sorted(p.name for p in root.glob("meddoprof-*-set"))
        raise CorpusError(f"no {set_dir.name} for split {split!r} (found: {found})", root)
    return set_dir


def splits_of(root: Path | str) -> list[str]:
    """The labelled splits a ProfNER or MEDDOPROF root holds (``train``, and ``valid`` when
    present)."""
    root = Path(root)
    return [split for split in ("train", "valid")
            if (root / "subtask-2" / "brat" / split).is_dir()
            or any(root.glob(f"meddoprof-{split}*-set"))]


def load_corpus(path: Path | str, split: str = "train", lenient: bool = False) -> tuple[list[Document], CorpusReport]:
    """Read any supported layout; ``split`` picks the ProfNER/MEDDOPROF split (ignored otherwise).

    Strict (default): the first problem raises :class:`CorpusError` naming file and line.
    Lenient: problems are counted in the report and only the bad item is skipped.
    """
    path = Path(path)
    layout = detect_layout(path)
    report = CorpusReport(path=str(path), layout=layout, lenient=lenient)
    if layout == "profner":
        docs = read_profner(path, split, report)
    elif layout == "meddoprof":
        docs = read_meddoprof_set(meddoprof_set_dir(path, split), report)
    elif layout == "meddoprof_set":
        docs = read_meddoprof_set(path, report)
    elif layout == "brat":
        docs = read_brat_dir(path, report)
    else:
        docs = read_text_dir(path, report)
    report.documents = len(docs)
    report.spans = sum(len(doc.spans) for doc in docs)
    _check_labels(docs, report)
    return docs, report


def _check_labels(docs: list[Document], report: CorpusReport) -> None:
    """Count, and warn about, span types / classes the corpus's guidelines do not define."""
    for field, known in KNOWN_LABELS.get(report.layout, {}).items():
        unknown: Counter = Counter()
        first: dict[str, str] = {}
        for doc in docs:
            for span in doc.spans:
                label = getattr(span, field)
                if label is not None and label not in known:
                    unknown[label] += 1
                    first.setdefault(label, doc.id)
        for label, count in unknown.most_common():
            report.unknown_labels[f"{field}:{label}"] = count
            message = (f"{report.path}: span {field} {label!r} ({count} spans, first in document "
                       f"{first[label]}) is not one of {', '.join(known)}: no model trains on "
                       f"it or scores it (a misspelling?)")
            report.messages.append(message)
            log.warning(message)
