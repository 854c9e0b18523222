#!/usr/bin/env bash
# The test suite (the README's test command runs this): two pytest-xdist workers, each taking
# whole modules (a module's Ray sweep or server fixture starts once), the slow modules first
# (tests/conftest.py). PROFNER_TEST_WORKERS=0 runs it in one process; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
workers=${PROFNER_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 0 ]; then
  parallel=(-n "$workers" --dist loadfile --no-loadscope-reorder)
fi
exec .venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=15 "${parallel[@]}" "$@"
