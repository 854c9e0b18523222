"""Helpers for the clean-shell tests: run the venv's ``profner`` as ``env -i HOME=<a fresh
home> PATH=/usr/bin:/bin`` leaves a user's shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
PROFNER = str(BIN / "profner")
READY_S = 120  # a hang is caught; a start beside the other test worker on 2 cores is not one


def clean_env(home: Path) -> dict[str, str]:
    """What ``env -i HOME=... PATH=/usr/bin:/bin`` leaves."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "PATH": "/usr/bin:/bin"}


def run(args: list[str], home: Path, timeout: float = 300, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=clean_env(home), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
