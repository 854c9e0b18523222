"""File digests: what a model dir records in ``meta.json`` and checks when it loads."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path | str) -> str:
    """The file's SHA-256 as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
