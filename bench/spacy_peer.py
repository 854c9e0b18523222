"""spaCy's stock CPU NER for Spanish, the peer a user would otherwise pick (used by the benches).

The pipeline is what ``python -m spacy init config c.cfg --lang es --pipeline ner --optimize
efficiency`` writes (tok2vec: hash embeddings + maxout CNN, transition-based NER); ``pipeline``
builds it untrained (its speed is its architecture's), ``train`` trains it with ``spacy train``
on DocBin files of our documents (its own early stopping on ``dev``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import spacy
from spacy.cli.init_config import init_config
from spacy.language import Language
from spacy.tokens import DocBin
from thinc.api import Config

from profner_models.documents import Document, Span

LABELS = ("PROFESION", "SITUACION_LABORAL")


def config() -> Config:
    return init_config(lang="es", pipeline=["ner"], optimize="efficiency", gpu=False)


def pipeline(labels: Sequence[str] = LABELS) -> Language:
    """The stock pipeline, initialised with ``labels`` and untrained."""
    nlp = spacy.util.load_model_from_config(config(), auto_fill=True, validate=True)
    ner = nlp.get_pipe("ner")
    for label in labels:
        ner.add_label(label)
    nlp.initialize()
    return nlp


def doc_bin(docs: Sequence[Document], path: Path, types: Sequence[str] = LABELS) -> dict[str, int]:
    """Write ``docs`` as a DocBin; spans are aligned to spaCy's tokens by expanding to token
    boundaries, overlapping ones dropped (spaCy's NER is flat). Returns what was kept."""
    nlp = spacy.blank("es")
    out, kept, dropped = DocBin(), 0, 0
    for document in docs:
        doc = nlp.make_doc(document.text)
        spans, taken = [], set()
        for span in sorted(document.spans, key=lambda s: (s.start, -s.end)):
            if span.type not in types:
                continue
            aligned = doc.char_span(span.start, span.end, label=span.type, alignment_mode="expand")
            if aligned is None or taken & set(range(aligned.start, aligned.end)):
                dropped += 1
                continue
            taken |= set(range(aligned.start, aligned.end))
            spans.append(aligned)
            kept += 1
        doc.ents = spans
        out.add(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(path)
    return {"documents": len(docs), "spans": kept, "dropped": dropped}


def train(train_docs: Sequence[Document], dev_docs: Sequence[Document], out: Path,
          threads: int = 1) -> Path:
    """``spacy train`` on our documents; the best model dir (``model-best``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config().to_disk(out / "config.cfg")
    doc_bin(train_docs, out / "train.spacy")
    doc_bin(dev_docs, out / "dev.spacy")
    env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "spacy", "train", str(out / "config.cfg"),
                    "--paths.train", str(out / "train.spacy"), "--paths.dev",
                    str(out / "dev.spacy"), "--output", str(out / "model")],
                   check=True, env={**os.environ, **env_threads})
    return out / "model" / "model-best"


def predict(nlp: Language, texts: Sequence[str]) -> list[Document]:
    """Entities as our spans; 7a label = any entity found."""
    docs = []
    for i, doc in enumerate(nlp.pipe(texts)):
        spans = [Span(e.start_char, e.end_char, e.label_, e.text) for e in doc.ents]
        docs.append(Document(str(i), doc.text, spans, int(bool(spans))))
    return docs
