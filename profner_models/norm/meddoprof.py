"""MEDDOPROF's NORM index as a model resource: its codes, the training mentions, build, save, load.

``norm`` block of a MEDDOPROF config (``norm.index.NormConfig`` plus ``valid_codes``)::

    norm: {model: "e5:multilingual-e5-small", k: 1, ..., valid_codes: meddoprof/meddoprof_valid_codes.tsv}
    norm: false                     # no index, no codes

``build_norm`` is called with the *training* documents only (``Task.build_resources``), so a
held-out dev split's mentions are never in the index.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from profner_models.config import resolve_data_path
from profner_models.corpus import read_valid_codes
from profner_models.documents import Document
from profner_models.norm.index import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    NormConfig,
    NormIndex,
    code_descriptions,
    load_encoder,
)
from profner_models.sample import MEDDOPROF_SAMPLE

log = logging.getLogger(__name__)

NORM_DIR = "norm"
SAMPLE_CODES = "@sample"  # norm.valid_codes: the bundled sample's code list


def norm_config(config: dict) -> NormConfig:
    block = {k: v for k, v in (config.get("norm") or {}).items() if k != "valid_codes"}
    return NormConfig.from_dict(block)


def valid_codes_for(config: dict, train: Sequence[Document]) -> dict[str, tuple[str, ...]]:
    """``norm.valid_codes``: a path (relative: against the data root), ``@sample`` (the bundled
    sample's list) or null (only the codes of the training mentions, described by them)."""
    source = (config.get("norm") or {}).get("valid_codes")
    if source is None:
        codes: dict[str, list[str]] = {}
        for doc in train:
            for span in doc.spans:
                if span.code:
                    codes.setdefault(span.code, [])
        log.warning("norm.valid_codes is null: only the %d codes seen in training are valid", len(codes))
        return {code: () for code in codes}
    if source == SAMPLE_CODES:
        path = MEDDOPROF_SAMPLE / "meddoprof_valid_codes.tsv"
    else:
        path = resolve_data_path(source)
    if not path.is_file():
        raise FileNotFoundError(f"norm.valid_codes: {path} not found")
    return read_valid_codes(path)


def norm_descriptions(config: dict, train: Sequence[Document]) -> dict[str, list[str]]:
    """Valid code -> its surface forms (gendered ``a/b`` labels split)."""
    return {code: [form for label in labels for form in code_descriptions(label)]
            for code, labels in valid_codes_for(config, train).items()}


def norm_mentions(train: Sequence[Document]) -> list[tuple[str, str]]:
    return [(span.text, span.code) for doc in train for span in doc.spans if span.code]


def build_norm(config: dict, train: Sequence[Document]) -> NormIndex | None:
    """The NORM index of a MEDDOPROF model: valid codes + the training mentions' gold codes
    (``norm: false`` in the config: no index, no codes)."""
    if config.get("norm") is False:
        return None
    settings = norm_config(config)
    encoder = load_encoder(settings.model)
    index = NormIndex.build(norm_descriptions(config, train), norm_mentions(train), settings,
                            encoder=encoder)
    if index.dropped_mentions:
        log.warning("NORM: %d training mentions without a valid code left out", index.dropped_mentions)
    return index


def save_norm(index: NormIndex, model_dir: Path) -> list[str]:
    index.save(Path(model_dir) / NORM_DIR)
    return [f"{NORM_DIR}/{INDEX_FILE}", f"{NORM_DIR}/{EMBEDDINGS_FILE}"]


def load_norm(model_dir: Path) -> NormIndex | None:
    """The saved NORM index of a model dir, or None when it has none."""
    directory = Path(model_dir) / NORM_DIR
    if not directory.is_dir():
        return None
    return NormIndex.load(directory)
