"""Search spaces for `profner tune`: one YAML file per study, loaded by :mod:`search_spaces.loader`."""

from search_spaces.loader import (
    SearchSpace,
    SearchSpaceError,
    load,
    save,
    shipped_spaces,
)

__all__ = [
    "SearchSpace",
    "SearchSpaceError",
    "load",
    "save",
    "shipped_spaces",
]
