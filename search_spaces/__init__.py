"""Search spaces for `profner tune`: one YAML file per study, loaded by :mod:`search_spaces.loader`.

The shipped files are listed here without the loader, which imports hyperopt and the model
schemas: ``profner --help`` and the library's commands must not need either. The loader's
names are imported on first use (``search_spaces.load`` and so on).
"""

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent
FAULTS_KEY = "faults"
TRIAL_KEYS = (FAULTS_KEY,)
"""Top-level trial-config blocks read by the Tune trainable, not model config
(``faults: {fail_at_epoch: N}``: fault injection for tests): left out when a sampled trial
config is checked against the model schema, removed before ``fit``."""
_LOADER_NAMES = ("SearchSpace", "SearchSpaceError", "load", "save")

__all__ = ["FAULTS_KEY", "SHIPPED_DIR", "TRIAL_KEYS", "shipped_spaces", *_LOADER_NAMES]


def shipped_spaces() -> list[str]:
    """Names of the search spaces shipped in this package (``smoke``, ``rnn_wide``, ...)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from search_spaces import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
