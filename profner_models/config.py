"""Where config paths point: the data root and paths relative to it.

Relative paths in configs (vector sources, the gazetteer, NORM code lists) resolve against the
data root: ``PROFNER_DATA_DIR``, default ``<repo>/../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("PROFNER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def resolve_data_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else data_root() / path
