"""The loops compiled (``_kernels.c``: a BiGRU layer's recurrence at prediction and in
training, a CRF's partition function with its gradients and its Viterbi paths, means of 4-bit
e5 piece rows).

``native`` is the extension module where the install built it (``pyproject.toml``: optional,
built where there is a C compiler), else None; ``compiled()`` reads it at each call (tests set
it to None), and where it gives None the callers run the same maths in NumPy or, in training,
in PyTorch's packed GRU and the CRF's tree of log-matrix products (``models.recurrent``,
``models.crf``, ``models.heads.viterbi``, ``vectors.e5.E5Static.bag_means``; the paths tested
equal). ``host`` gives a tensor as the
NumPy array those loops read.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import torch

native: ModuleType | None
try:
    import profner_models._kernels as native
except ImportError:  # pragma: no cover - an install without a C compiler
    native = None


def compiled() -> ModuleType | None:
    """The compiled loops, or None: run the NumPy ones."""
    return native


def host(tensor: torch.Tensor) -> np.ndarray:
    """``tensor``'s values as a NumPy array, float32 for a floating tensor. A CPU tensor already
    float32 (or not floating) and outside autograd is read in place: ``.detach()``, ``.float()``
    and ``.cpu()`` each dispatch an op even when they change nothing (~25 of a tweet's ops)."""
    if tensor.requires_grad or tensor.device.type != "cpu":
        tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.float()
    return tensor.numpy()
