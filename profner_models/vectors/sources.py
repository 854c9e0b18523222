"""The texts word vectors learn from, with the held-out documents left out.

A source is a folder (every ``*.txt`` under it, one document per file), a ``.tsv`` file (its
first column: the gazetteer's terms), any other file (its lines), or ``"@train"`` (the words of
the training documents). Relative paths resolve against the data root.

``HeldOut`` is the dev split a run holds out: any source document whose text is a held-out
text, or whose file name is a held-out document's id, is skipped. The trainer builds it from
the documents it scores on but does not train on, so a corpus folder named as a source (which
also holds the dev files) never leaks dev text into vectors, vocabularies or PCA fits, whatever
the config says. Files are read as the corpus readers read them (UTF-8, newlines untouched), so
the texts compare equal.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from profner_models.config import resolve_data_path
from profner_models.documents import Document
from profner_models.text.tokenize import tokenize
from profner_models.vectors.base import VectorsError

log = logging.getLogger(__name__)

TRAIN_SOURCE = "@train"


@dataclass(frozen=True)
class HeldOut:
    """Documents nothing may learn from: their texts and ids."""

    texts: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, docs: Iterable[Document]) -> "HeldOut":
        docs = list(docs)
        return cls(frozenset(d.text for d in docs), frozenset(d.id for d in docs))

    def __bool__(self) -> bool:
        return bool(self.texts)

    def __len__(self) -> int:
        return len(self.ids)

    def holds(self, doc_id: str, text: str) -> bool:
        return text in self.texts or doc_id in self.ids

    def digest(self) -> str:
        """A key for caches built from the sources (different held-out set, other entry)."""
        sha = hashlib.sha256()
        for text in sorted(self.texts):
            sha.update(text.encode("utf-8") + b"\0")
        return sha.hexdigest()[:16]


NOTHING = HeldOut()


def split_sources(sources: Sequence[str | Path]) -> tuple[list[Path], bool]:
    """(resolved paths, whether ``@train`` is among the sources); a missing path is an error."""
    paths = [resolve_data_path(s) for s in sources if str(s) != TRAIN_SOURCE]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise VectorsError(f"vectors source not found: {', '.join(missing)}")
    return paths, any(str(s) == TRAIN_SOURCE for s in sources)


def fingerprint(paths: Sequence[Path]) -> str:
    """Paths, sizes and modification times of the source files (a cache key part)."""
    sha = hashlib.sha256()
    for path in paths:
        for file in _files(path):
            stat = file.stat()
            sha.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()[:16]


def read_texts(paths: Sequence[Path], held_out: HeldOut = NOTHING) -> Iterator[str]:
    """The texts of the sources, held-out documents left out (their count is logged)."""
    for path in paths:
        skipped = 0
        if path.is_dir():
            for file in _files(path):
                text = file.read_bytes().decode("utf-8")
                if held_out.holds(file.stem, text):
                    skipped += 1
                    continue
                yield text
        else:
            lines = path.read_bytes().decode("utf-8").splitlines()
            for line in lines:
                text = line.split("\t", 1)[0] if path.suffix == ".tsv" else line
                if not text.strip():
                    continue
                if held_out.holds("", text):
                    skipped += 1
                    continue
                yield text
        if skipped:
            log.info("vectors source %s: %d held-out documents left out", path, skipped)


def sentences(sources: Sequence[str | Path], *, lowercase: bool,
              train_words: Sequence[Sequence[str]] = (), held_out: HeldOut = NOTHING
              ) -> list[list[str]]:
    """Tokenised sentences of the sources (``@train``: ``train_words``), non-empty ones."""
    paths, use_train = split_sources(sources)
    norm = str.lower if lowercase else str
    out = [[norm(w) for w in words] for words in train_words] if use_train else []
    for text in read_texts(paths, held_out):
        out.append([norm(t.text) for t in tokenize(text)])
    return [s for s in out if s]


def corpus_words(sources: Sequence[str | Path], *, lowercase: bool,
                 train_words: Sequence[Sequence[str]] = (), held_out: HeldOut = NOTHING
                 ) -> list[str]:
    """Distinct words of the sources, first appearance first (no whitespace inside a word)."""
    words = (w for sentence in sentences(sources, lowercase=lowercase, train_words=train_words,
                                         held_out=held_out) for w in sentence)
    return [w for w in dict.fromkeys(words) if not any(ch.isspace() for ch in w)]


def _files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.txt")) if path.is_dir() else [path]
