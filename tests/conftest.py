"""Shared fixtures: where the real corpora live, the models' two loop paths, and an isolated
Ray/MLflow environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def data_root() -> Path:
    return Path(os.environ.get("PROFNER_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The staged corpora root (holds profner/ and meddoprof/); skips when it is absent."""
    root = data_root()
    if not (root / "profner").is_dir():
        pytest.skip(f"real corpora not found at {root} (set PROFNER_DATA_DIR)")
    return root


@pytest.fixture(params=["compiled", "numpy"])
def loops(request, monkeypatch) -> str:
    """Runs a test on each path of the models' step loops: C (``_kernels.c``, skipped
    where the install could not build it) and NumPy (``kernels.native`` set to None)."""
    from profner_models import kernels

    if request.param == "numpy":
        monkeypatch.setattr(kernels, "native", None)
    elif kernels.native is None:
        pytest.skip("the compiled loops are not built here")
    return request.param


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked slow as a whole (Ray sweeps, servers, clean shells) first, in their
    file order: ``scripts/test.sh``'s workers take whole modules in this order, so the long ones
    start at once and the quick ones fill in around them."""
    def whole_module_slow(item: pytest.Item) -> bool:
        marks = getattr(item.module, "pytestmark", [])
        return any(mark.name == "slow" for mark in (marks if isinstance(marks, list) else [marks]))

    items.sort(key=lambda item: not whole_module_slow(item))  # stable: file order otherwise


_real_data_skips: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped and "real corpora not found" in str(report.longrepr):
        _real_data_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    """A real-data test that skips while the staged corpora exist next to the checkout is a
    broken setup (a wrong PROFNER_DATA_DIR, a moved folder), not a pass: fail the run."""
    staged = REPO.parent / "shared" / "data" / "profner"
    if _real_data_skips and staged.is_dir():
        print(f"\n{len(_real_data_skips)} real-data tests skipped although {staged} exists "
              f"(PROFNER_DATA_DIR={os.environ.get('PROFNER_DATA_DIR')!r}): failing the run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
