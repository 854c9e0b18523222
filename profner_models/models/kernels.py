"""The models' step loops compiled (``_kernels.c``: a BiGRU layer's recurrence at prediction
and in training, CRF Viterbi).

``native`` is the extension module where the install built it (``pyproject.toml``: optional,
built where there is a C compiler), else None; ``compiled()`` reads it at each call (tests set
it to None), and where it gives None the callers run the same maths in NumPy or, in training,
in PyTorch's packed GRU (``models.recurrent``, ``models.heads.viterbi``; the paths tested
equal).
"""

from __future__ import annotations

from types import ModuleType

native: ModuleType | None
try:
    import profner_models.models._kernels as native
except ImportError:  # pragma: no cover - an install without a C compiler
    native = None


def compiled() -> ModuleType | None:
    """The compiled loops, or None: run the NumPy ones."""
    return native
