"""The ``profner`` command itself: help and argument errors without the heavy stack, and the
library's commands working where a plugin's dependency (hyperopt) is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "spacy", "hyperopt", "ray", "mlflow", "transformers", "pandas")

# Runs profner's main(argv) in a fresh interpreter and prints which heavy modules it imported;
# BLOCKED names are made unimportable first (a dependency missing from the machine).
RUNNER = """
import importlib.abc, json, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
from profner_models.cli.main import main
try:
    code = main({argv!r})
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code, "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def profner(argv: list[str], blocked: tuple[str, ...] = (), cwd: Path | None = None) -> dict:
    script = RUNNER.format(blocked=set(blocked), argv=argv, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert done.stdout.strip(), done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "stdout": done.stdout,
            "stderr": done.stderr}


@pytest.mark.parametrize("argv", [
    ["--help"], ["train", "--help"], ["predict", "--help"], ["evaluate", "--help"],
    ["data", "stats", "--help"], ["tune", "--help"], ["refit", "--help"], ["serve", "--help"],
    ["train"], ["tune"], ["evaluate", "--task", "nope", "--gold", "a", "--pred", "b"],
])
def test_help_and_argument_errors_import_nothing_heavy(argv) -> None:
    result = profner(argv)
    assert result["code"] in (0, 2)
    assert result["heavy"] == [], f"profner {' '.join(argv)} imported {result['heavy']}"


def test_the_library_commands_work_without_hyperopt(tmp_path) -> None:
    """hyperopt belongs to `profner tune`: train and predict never need it."""
    trained = profner(["train", "smoke_rnn", "--out", str(tmp_path / "m"), "--no-progress"],
                      blocked=("hyperopt",))
    assert trained["code"] == 0, trained["stderr"][-3000:]
    assert (tmp_path / "m" / "meta.json").is_file()
    from profner_models.sample import PROFNER_SAMPLE

    predicted = profner(["predict", "--model", str(tmp_path / "m"), "--input",
                         str(PROFNER_SAMPLE / "subtask-2/brat/valid"), "--out-7b",
                         str(tmp_path / "7b.tsv")], blocked=("hyperopt",))
    assert predicted["code"] == 0, predicted["stderr"][-3000:]
    assert (tmp_path / "7b.tsv").read_text(encoding="utf-8").startswith("tweet_id")
    tune = profner(["tune", "smoke"], blocked=("hyperopt",))
    assert tune["code"] != 0 and "hyperopt" in tune["stderr"]
    assert "Traceback" not in tune["stderr"]
