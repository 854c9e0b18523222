"""Corpora: readers, writers and validation for ProfNER and MEDDOPROF, their statistics, the
official download, and the LM-ranked augmentation of training documents.

``load_corpus(path, split, lenient)`` detects the layout and returns ``(docs, report)``.
Offsets are ``str`` characters of files read with ``encoding="utf-8"`` (BOM kept as char 0).
Imports ``documents``, ``spans``, ``config``, ``sample`` and ``text`` only.
"""

from profner_models.corpus.brat import read_brat_dir, read_text_dir, write_brat
from profner_models.corpus.load import detect_layout, load_corpus, splits_of
from profner_models.corpus.meddoprof import (
    NormRow,
    read_meddoprof_set,
    read_norm_tsv,
    read_valid_codes,
    write_meddoprof_outputs,
    write_norm_tsv,
)
from profner_models.corpus.profner import (
    SCORED_TYPES,
    read_7a_tsv,
    read_7b_tsv,
    read_profner,
    write_7a_tsv,
    write_7b_tsv,
)
from profner_models.corpus.report import KINDS, CorpusError, CorpusReport
from profner_models.corpus.stats import corpus_stats, format_stats

__all__ = [
    "KINDS", "SCORED_TYPES", "CorpusError", "CorpusReport", "NormRow",
    "corpus_stats", "detect_layout", "format_stats", "load_corpus", "read_7a_tsv",
    "read_7b_tsv", "read_brat_dir", "read_meddoprof_set", "read_norm_tsv", "read_profner",
    "read_text_dir", "read_valid_codes", "splits_of", "write_7a_tsv", "write_7b_tsv",
    "write_brat", "write_meddoprof_outputs", "write_norm_tsv",
]
