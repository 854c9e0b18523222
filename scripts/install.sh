#!/usr/bin/env bash
# Create .venv and install profner-hpo with its test extras.
# torch==2.13.0 first: on CPU machines it is a local CPU wheel, whereas letting pip resolve a
# plain torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"
fi
.venv/bin/pip install -q -e ".[dev]"
echo "installed into $(pwd)/.venv"
