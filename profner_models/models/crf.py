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

On a CPU, where the kernels of ``_kernels.c`` are built, the partition function is instead the
forward algorithm step by step in C (``crf_log_partition``: one op, its backward the
forward-backward algorithm, one op): the tree does ``T^3`` work per word against ``T^2``, and
on a CPU the work is what costs (16 windows of 128 words, 13 BILOU tags: 71 ms forward and
backward against ~1.5 ms). It sums in double, so it is nearer the exact value than the tree in
float (marginals ~3e-8 against ~6e-5 off there; ``tests/test_crf.py``).
Decoding is Viterbi on the host after inference (``heads.viterbi``: the C loop of
``_kernels.c``, or NumPy where it is not built).
"""

from __future__ import annotations

import torch
from torch import nn

from profner_models.kernels import compiled

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
        if (compiled() is not None and emissions.device.type == "cpu"
                and emissions.dtype == torch.float32 and self.transitions.dtype == torch.float32):
            return crf_log_partition(emissions, mask.sum(1), self.start_transitions,
                                     self.transitions, self.end_transitions)[0]
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


@torch.library.custom_op("profner::crf_log_partition", mutates_args=())
def crf_log_partition(emissions: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor,
                      transitions: torch.Tensor, end: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``LinearChainCRF.log_partition`` from each row's length ``[B]`` on a CPU, in C
    (``crf_forward``): log Z ``[B]`` and what its backward reads, each prefix's log-sums
    ``[B, W, T]`` (float64)."""
    rows, width, tags = emissions.shape
    log_z = emissions.new_empty(rows)
    alpha = emissions.new_empty((rows, width, tags), dtype=torch.float64)
    inputs = (emissions, lengths, start, transitions, end)
    compiled().crf_forward(*(t.contiguous().numpy() for t in inputs), log_z.numpy(), alpha.numpy())
    return log_z, alpha


@torch.library.custom_op("profner::crf_log_partition_backward", mutates_args=())
def crf_log_partition_backward(emissions: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor,
                               transitions: torch.Tensor, end: torch.Tensor, alpha: torch.Tensor,
                               d_log_z: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``crf_log_partition``'s log Z at the emissions, start, transitions and end
    (the forward-backward algorithm: each tag's and pair of tags' marginal probability)."""
    d_emissions, d_start = torch.empty_like(emissions), torch.empty_like(start)
    d_transitions, d_end = torch.empty_like(transitions), torch.empty_like(end)
    inputs = (emissions, lengths, start, transitions, end, alpha, d_log_z)
    compiled().crf_backward(*(t.contiguous().numpy() for t in inputs),
                            *(t.numpy() for t in (d_emissions, d_start, d_transitions, d_end)))
    return d_emissions, d_start, d_transitions, d_end


def _keep_for_backward(ctx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(*inputs, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, d_log_z: torch.Tensor, _: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    d_emissions, d_start, d_transitions, d_end = crf_log_partition_backward(*ctx.saved_tensors, d_log_z)
    return d_emissions, None, d_start, d_transitions, d_end


crf_log_partition.register_autograd(_backward, setup_context=_keep_for_backward)
