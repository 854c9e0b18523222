"""What a frozen encoder's reader needs: its states per window kept, its layers mixed.

A pretrained encoder that never trains (``freeze``) is a fixed feature extractor, as in ELMo and
Flair: its states depend on a window's pieces alone, so a fit can compute them once per window
(``StateMemo``) and learn only how to mix the layers it reads (``ScalarMix``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class ScalarMix(nn.Module):
    """ELMo's mix of an encoder's layers: ``scale * sum_j softmax(weights)_j * layer_j``."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(count))
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """``[..., count, hidden]`` -> ``[..., hidden]``."""
        return self.scale * torch.einsum("...lh,l->...h", layers, torch.softmax(self.weights, 0))


class StateMemo:
    """A frozen encoder's states per window (keyed by its piece ids), float16, up to ``limit``
    bytes; windows beyond it are computed each time."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.rows: dict[tuple[int, ...], torch.Tensor] = {}

    def clear(self) -> None:
        self.rows.clear()
        self.used = 0

    def states(self, ids: torch.Tensor, mask: torch.Tensor,
               run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``run(ids, mask)``'s output for these rows, the windows met before read back."""
        lengths = mask.sum(-1).tolist()
        keys = [tuple(row[:n]) for row, n in zip(ids.tolist(), lengths)]
        found = [self.rows.get(key) for key in keys]
        missing = [i for i, state in enumerate(found) if state is None]
        if missing:
            width = max(lengths[i] for i in missing)
            pick = torch.tensor(missing, device=ids.device)
            # normal tensors (not inference ones): an entry made while scoring dev is read in
            # training too
            with torch.inference_mode(False), torch.no_grad():
                computed = run(ids[pick, :width], mask[pick, :width]).to(torch.float16)
                for j, i in enumerate(missing):
                    found[i] = state = computed[j, : lengths[i]].clone()
                    size = state.numel() * state.element_size()
                    if self.used + size <= self.limit:
                        self.rows[keys[i]], self.used = state, self.used + size
        out = torch.zeros((len(keys), ids.shape[1], *found[0].shape[1:]), device=ids.device)
        for i, state in enumerate(found):
            out[i, : len(state)] = state
        return out
