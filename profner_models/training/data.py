"""The data a fit sees: the train and dev split of a corpus, which dev documents are held out
of everything learned, and how new the dev text is to a model."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Sequence

from profner_models.config import resolve_data_path
from profner_models.corpus import load_corpus, splits_of
from profner_models.documents import Document, Span
from profner_models.models import SEEN, UNKNOWN, Backbone, Encoded
from profner_models.tasks import data_config, task_of
from profner_models.vectors import HeldOut


def load_task_data(config: dict, data_dir: Path | str | None = None) -> tuple[list[Document], list[Document]]:
    """(train, dev): the corpus's ``valid`` split as dev when it has one (and ``data.dev_from``
    is ``valid``), else a seeded ``data.dev_fraction`` of train (``data.dev_seed``). ``data_dir``
    None: the bundled sample
    of the config's ``task``. ``data.train_on_dev`` (the final refit of a tuned config) trains
    on train+dev; dev is still returned, so its scores are then on seen data."""
    data = data_config(config)
    data_dir = Path(task_of(config).sample_dir() if data_dir is None else data_dir)
    train, _ = load_corpus(data_dir, "train")
    if data["dev_from"] == "valid" and "valid" in splits_of(data_dir):
        dev, _ = load_corpus(data_dir, "valid")
    else:
        train, dev = _split_dev(train, float(data["dev_fraction"]), int(data["dev_seed"]))
    extra = [doc for block in data["extra_train"] for doc in extra_documents(block, data["types"])]
    return ([*train, *dev, *extra] if data["train_on_dev"] else [*train, *extra]), dev


def extra_documents(block: dict, types: Sequence[str]) -> list[Document]:
    """The training documents of one ``data.extra_train`` block: the corpus's documents or
    sentences, their mentions of ``types`` only (offsets into the unit), the label 1 when one
    is left; with ``keep: mentions`` only the units that have one."""
    documents, _ = load_corpus(resolve_data_path(block["corpus"]), block["split"])
    kept_types = set(types)
    units = []
    for doc in documents:
        bounds = ([0, len(doc.text)] if block["unit"] == "document" else
                  [0, *(m.end() for m in _SENTENCE_END.finditer(doc.text)), len(doc.text)])
        for index, (start, end) in enumerate(zip(bounds, bounds[1:])):
            text = doc.text[start:end].rstrip()
            spans = [Span(s.start - start, s.end - start, s.type, s.text) for s in doc.spans
                     if s.type in kept_types and start <= s.start and s.end <= start + len(text)]
            if text.strip() and (spans or block["keep"] == "all"):
                units.append(Document(f"extra:{doc.id}:{index}", text, spans, int(bool(spans))))
    return units


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _split_dev(train: list[Document], fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(train) * fraction))
    dev_ids = set(order[:n_dev])
    return ([d for i, d in enumerate(train) if i not in dev_ids],
            [d for i, d in enumerate(train) if i in dev_ids])


def held_out_of(train: Sequence[Document], dev: Sequence[Document]) -> HeldOut:
    """The dev documents that are not training documents (by id and by text): what no
    vocabulary, vectors, PCA or index of the model may be built from."""
    ids, texts = {d.id for d in train}, {d.text for d in train}
    return HeldOut.of(d for d in dev if d.id not in ids and d.text not in texts)


def word_novelty(backbone: Backbone, encoded: Sequence[Encoded]) -> dict[str, float]:
    """How new the words of ``encoded`` are to the model: ``dev_unknown_rate``, the share
    outside its vocabulary (they take the unknown-word path), and ``dev_unseen_rate``, the share
    not in its training documents (known at most from pretrained vectors). Empty for a
    backbone without a word vocabulary."""
    statuses = [s for e in encoded if e.tokens for s in (backbone.word_status(e.words) or [])]
    if not statuses:
        return {}
    return {"dev_unknown_rate": sum(s == UNKNOWN for s in statuses) / len(statuses),
            "dev_unseen_rate": sum(s != SEEN for s in statuses) / len(statuses)}


def dev_line(documents: int, held_out: int, novelty: dict[str, float]) -> str:
    if held_out:
        what = f"dev: {documents} documents held out from every learned resource"
    else:
        what = f"dev: {documents} documents, all trained on: its scores are on seen text"
    if novelty:
        what += (f"; {novelty['dev_unknown_rate']:.1%} of its words outside the vocabulary, "
                 f"{novelty['dev_unseen_rate']:.1%} not in the training documents")
    return what
