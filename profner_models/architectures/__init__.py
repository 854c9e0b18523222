"""Model architectures: backbones and task heads, registered by name (see ``base``).

Every module of this package is imported here, so its ``@backbones.register`` /
``@task_heads.register`` factories exist as soon as ``profner_models.architectures`` is imported:
adding an architecture is adding a module, with no edit to this file or to the trainer.
"""

from __future__ import annotations

import importlib
import pkgutil

from profner_models.architectures.base import (
    SEEN,
    UNKNOWN,
    VECTORS_ONLY,
    Backbone,
    BackboneContext,
    BackboneOutput,
    DocumentHead,
    HeadContext,
    WordHead,
    backbones,
    task_heads,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "SEEN",
    "UNKNOWN",
    "VECTORS_ONLY",
    "Backbone",
    "BackboneContext",
    "BackboneOutput",
    "DocumentHead",
    "HeadContext",
    "WordHead",
    "backbones",
    "task_heads",
]
