"""Multi-word gazetteer matching over tokens: per-word flags a backbone can embed.

Terms come from the ProfNER gazetteer TSV (``term<TAB>lemma``, no header: the first column is
used, since the lemma column is lemmatised text that never occurs as such in tweets) or from
any one-term-per-line list. ``"bundled"`` is the sample corpus's gazetteer.

Matching is on normalised words (lower case, accents folded, as tweets often drop them),
longest match first, left to right. Flags: ``OUT`` 0, ``BEGIN`` 1, ``INSIDE`` 2 (``SIZE`` ids).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from profner_models.config import resolve_data_path
from profner_models.sample import PROFNER_SAMPLE
from profner_models.text.tokenize import tokenize

OUT, BEGIN, INSIDE = 0, 1, 2
SIZE = 3
FILE_NAME = "gazetteer.txt"


class GazetteerError(ValueError):
    """A gazetteer file that cannot be read (the message names it)."""


@lru_cache(maxsize=65536)
def normalize(word: str) -> str:
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Gazetteer:
    """A set of (multi-word) terms, matched over token sequences."""

    def __init__(self, terms: Iterable[str], max_words: int = 8) -> None:
        self.terms: list[str] = []
        self._entries: set[tuple[str, ...]] = set()
        self._prefixes: set[tuple[str, ...]] = set()
        for term in terms:
            term = term.strip()
            words = tuple(normalize(t.text) for t in tokenize(term) if not t.text.isspace())
            if not words or len(words) > max_words or words in self._entries:
                continue
            self.terms.append(term)
            self._entries.add(words)
            self._prefixes.update(words[:n] for n in range(1, len(words)))

    def __len__(self) -> int:
        return len(self.terms)

    @classmethod
    def load(cls, path: str | Path, max_words: int = 8) -> "Gazetteer":
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        if not path.is_file():
            raise GazetteerError(f"{path}: gazetteer file not found")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise GazetteerError(f"{path}: not UTF-8 text ({error})") from error
        return cls((line.split("\t", 1)[0] for line in lines if line.strip()), max_words)

    def save(self, path: Path) -> None:
        path.write_text("".join(f"{term}\n" for term in self.terms), encoding="utf-8")

    def flags(self, words: Sequence[str]) -> list[int]:
        """One flag per word: BEGIN/INSIDE over the longest term starting at each free word."""
        norm = [normalize(w) for w in words]
        flags = [OUT] * len(words)
        i = 0
        while i < len(norm):
            longest, key = 0, ()
            for j in range(i, len(norm)):
                key += (norm[j],)
                if key in self._entries:
                    longest = len(key)
                if key not in self._prefixes:
                    break
            if longest:
                flags[i] = BEGIN
                flags[i + 1 : i + longest] = [INSIDE] * (longest - 1)
                i += longest
            else:
                i += 1
        return flags


def bundled_path() -> Path:
    found = sorted(Path(PROFNER_SAMPLE).rglob("*gazetteer*.tsv")) or sorted(
        Path(PROFNER_SAMPLE).rglob("*gazetteer*.txt"))
    if not found:
        raise GazetteerError(f"{PROFNER_SAMPLE}: the bundled sample has no gazetteer file")
    return found[0]


def gazetteer_from_config(value: str | Path | None) -> Gazetteer | None:
    """``data.gazetteer``: null | "bundled" | a path (relative paths: the data root)."""
    if value is None:
        return None
    if value == "bundled":
        return Gazetteer.load(bundled_path())
    return Gazetteer.load(resolve_data_path(value))
