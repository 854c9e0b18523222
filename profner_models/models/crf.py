"""A linear-chain CRF whose likelihood costs a few dozen ops whatever the sentence length.

``LinearChainCRF`` computes what ``torchcrf.CRF`` computes (same parameters, same names and
initialisation, so model dirs saved with either load in the other; ``tests/test_crf.py`` pins
the log-likelihood to pytorch-crf's), but without a loop over time steps:

- the gold path's score is gathered at once (emissions at the tags, transitions at each pair of
  consecutive tags, start and end);
- the partition function is a product of per-step score matrices in the log semiring,
  ``M_t[i, j] = transitions[i, j] + emissions[t, j]`` (the identity at padding), reduced pairwise
  in a tree: ``ceil(log2(W))`` batched log-matrix products instead of ``W`` sequential steps.

pytorch-crf's forward algorithm dispatches ~10 ops per word forward and more backward (~1,500
for a 50-word batch); on a GPU each is a kernel launch. Here: about 10 ops per tree level.
Decoding is Viterbi on the host after inference (``heads.viterbi``: the C loop of
``_kernels.c``, or NumPy where it is not built).
"""

from __future__ import annotations

import torch
from torch import nn

IDENTITY_OFF = -10000.0  # log of "no path" off the diagonal of the identity: finite, so no NaN


class LinearChainCRF(nn.Module):
    """``forward(emissions [B, W, T], tags [B, W], mask [B, W] bool) -> log-likelihood``
    (mean over the batch), batch first; ``mask[:, 0]`` must be all True."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        for parameter in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(parameter, -0.1, 0.1)  # as pytorch-crf
        eye = torch.eye(num_tags, dtype=torch.bool)  # the log-semiring identity, [1, 1, T, T]
        self.register_buffer("identity", torch.full((1, 1, num_tags, num_tags), IDENTITY_OFF)
                             .masked_fill(eye, 0.0), persistent=False)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.gold_score(emissions, tags, mask) - self.log_partition(emissions, mask)).mean()

    def marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, W, T]``: each word's tag probabilities over all paths (0 at padding): the
        gradient of the log partition function with respect to the emissions, which is what
        the forward-backward algorithm computes. Works under ``torch.inference_mode``."""
        with torch.inference_mode(False), torch.enable_grad():
            scores = emissions.detach().float().clone().requires_grad_(True)
            (probabilities,) = torch.autograd.grad(self.log_partition(scores, mask.clone()).sum(), scores)
        return probabilities * mask.unsqueeze(-1)

    def gold_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B]``: the score of each row's tag path."""
        weight = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # [B, W]
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # [B, W-1]
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)
        return (self.start_transitions[tags[:, 0]] + (emitted * weight).sum(1)
                + (moved * weight[:, 1:]).sum(1) + self.end_transitions[last])

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B]``: log of the summed exp-scores of every tag path of each row."""
        first = self.start_transitions + emissions[:, 0]  # [B, T]
        if emissions.shape[1] == 1:
            return torch.logsumexp(first + self.end_transitions, dim=-1)
        steps = self.transitions + emissions[:, 1:].unsqueeze(2)  # [B, W-1, from, to]
        identity = self.identity.to(steps.dtype)
        steps = torch.where(mask[:, 1:, None, None], steps, identity)
        while steps.shape[1] > 1:
            if steps.shape[1] % 2:
                steps = torch.cat([steps, identity.expand(steps.shape[0], 1, -1, -1)], dim=1)
            steps = _log_matmul(steps[:, 0::2], steps[:, 1::2])
        last = torch.logsumexp(first.unsqueeze(-1) + steps[:, 0], dim=1)  # [B, T]
        return torch.logsumexp(last + self.end_transitions, dim=-1)


def _log_matmul(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``[..., i, j] = logsumexp_k(left[..., i, k] + right[..., k, j])``."""
    return torch.logsumexp(left.unsqueeze(-1) + right.unsqueeze(-3), dim=-2)
