#!/usr/bin/env bash
# The test suite (the README's test command runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=15 "$@"
