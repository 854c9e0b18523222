"""LinearChainCRF: pytorch-crf's likelihood and gradients, without a loop over time steps (the
tree) or in C step by step on a CPU (``crf_log_partition``), and model dirs of either load in
the other (same parameter names)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchcrf import CRF

from profner_models import kernels
from profner_models.models.crf import LinearChainCRF
from profner_models.opcount import OpCounter


def pair(num_tags: int, seed: int) -> tuple[CRF, LinearChainCRF]:
    torch.manual_seed(seed)
    reference = CRF(num_tags, batch_first=True)
    ours = LinearChainCRF(num_tags)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def batch(rows: int, width: int, num_tags: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    emissions = torch.randn(rows, width, num_tags, generator=generator) * 3
    tags = torch.randint(num_tags, (rows, width), generator=generator)
    lengths = torch.randint(1, width + 1, (rows,), generator=generator)
    lengths[0] = width
    mask = torch.arange(width)[None] < lengths[:, None]
    return emissions, tags.masked_fill(~mask, 0), mask


@pytest.mark.parametrize(("rows", "width", "num_tags"), [(1, 1, 3), (5, 2, 5), (16, 37, 5),
                                                         (7, 64, 9), (3, 33, 13)])
def test_log_likelihood_and_gradients_match_pytorch_crf(rows, width, num_tags, loops) -> None:
    reference, ours = pair(num_tags, seed=width)
    emissions, tags, mask = batch(rows, width, num_tags, seed=rows + width)
    expected_input = emissions.clone().requires_grad_(True)
    ours_input = emissions.clone().requires_grad_(True)
    expected = reference(expected_input, tags, mask=mask, reduction="mean")
    got = ours(ours_input, tags, mask)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    expected.backward()
    got.backward()
    torch.testing.assert_close(ours_input.grad, expected_input.grad, rtol=1e-4, atol=1e-5)
    for name, parameter in ours.named_parameters():
        other = dict(reference.named_parameters())[name].grad  # None: unused (one word)
        torch.testing.assert_close(parameter.grad, torch.zeros_like(parameter) if other is None
                                   else other, rtol=1e-4, atol=1e-5)


def test_forbidden_transitions_keep_the_likelihood_finite(loops) -> None:
    reference, ours = pair(5, seed=1)
    with torch.no_grad():
        for crf in (reference, ours):
            crf.transitions[1:, 0] = -10000.0
    emissions, tags, mask = batch(8, 40, 5, seed=3)
    tags = torch.zeros_like(tags)  # a path through allowed moves only
    got = ours(emissions, tags, mask)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, reference(emissions, tags, mask=mask, reduction="mean"),
                               rtol=1e-5, atol=1e-3)


def test_the_op_count_grows_with_the_log_of_the_width(monkeypatch) -> None:
    """The tree (a GPU's path, and a CPU's without the kernels)."""
    monkeypatch.setattr(kernels, "native", None)
    _, ours = pair(5, seed=0)
    counts = []
    for width in (16, 64):
        emissions, tags, mask = batch(16, width, 5, seed=width)
        emissions.requires_grad_(True)
        with OpCounter() as ops:
            ours(emissions, tags, mask).backward()
        counts.append(ops.total)
    assert counts[1] - counts[0] < 60 and counts[1] < 250, counts


def test_marginals_are_the_brute_force_path_probabilities(loops) -> None:
    import itertools

    _, ours = pair(3, seed=5)
    emissions, _, _ = batch(2, 4, 3, seed=9)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    with torch.inference_mode():
        got = ours.marginals(emissions, mask)
    for row in range(2):
        length = int(mask[row].sum())
        expected = torch.zeros(4, 3)
        total = 0.0
        for path in itertools.product(range(3), repeat=length):
            tags = torch.tensor([list(path) + [0] * (4 - length)])
            weight = float(ours.gold_score(emissions[row:row + 1], tags, mask[row:row + 1]).detach().exp())
            total += weight
            for t, tag in enumerate(path):
                expected[t, tag] += weight
        torch.testing.assert_close(got[row], expected / total, rtol=1e-4, atol=1e-5)


def test_on_a_cpu_the_partition_function_is_one_op_each_way_and_nearer_the_exact_value() -> None:
    """The C forward-backward sums in double: log Z and the emissions' gradients (the marginals)
    nearer float64's tree than the tree in float32 is, with BILOU-like forbidden moves and rows
    of every length; one op forward and one backward whatever the width."""
    if kernels.native is None:
        pytest.skip("the kernels are not built here")
    _, ours = pair(13, seed=2)
    with torch.no_grad():
        ours.transitions[0, 1:7] = -10000.0
        ours.start_transitions[3] = -10000.0
    emissions, tags, mask = batch(16, 128, 13, seed=4)
    exact = LinearChainCRF(13).double()
    exact.load_state_dict(ours.state_dict())
    exact_input = emissions.double().requires_grad_(True)
    exact_log_z = exact.log_partition(exact_input, mask)
    exact_log_z.sum().backward()
    errors = {}
    for path in ("compiled", "tree"):
        with pytest.MonkeyPatch.context() as patch:
            if path == "tree":
                patch.setattr(kernels, "native", None)
            given = emissions.clone().requires_grad_(True)
            with OpCounter() as ops:
                log_z = ours.log_partition(given, mask)
                log_z.sum().backward()
        errors[path] = (float((log_z.detach().double() - exact_log_z.detach()).abs().max()),
                        float((given.grad.double() - exact_input.grad).abs().max()))
        if path == "compiled":
            assert ops.by_name["crf_log_partition"] == 1, ops.summary()
            assert ops.by_name["crf_log_partition_backward"] == 1, ops.summary()
    assert errors["compiled"][1] < 1e-6 < errors["tree"][1], errors
    assert errors["compiled"][0] <= errors["tree"][0], errors


def test_the_partition_kernel_names_a_wrong_buffer() -> None:
    if kernels.native is None:
        pytest.skip("the kernels are not built here")
    emissions = np.zeros((2, 3, 4), np.float32)
    arrays = [emissions, np.array([3, 2]), np.zeros(4, np.float32), np.zeros((4, 4), np.float32),
              np.zeros(4, np.float32), np.zeros(2, np.float32), np.zeros((2, 3, 4), np.float64)]
    kernels.native.crf_forward(*arrays)
    with pytest.raises(ValueError, match=r"lengths\[1\] = 4: must be in 1..3"):
        kernels.native.crf_forward(*arrays[:1], np.array([3, 4]), *arrays[2:])
    with pytest.raises(ValueError, match="alpha: expected a C-contiguous float64"):
        kernels.native.crf_forward(*arrays[:-1], np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"shapes: emissions \[B, W, T\]"):
        kernels.native.crf_forward(*arrays[:3], np.zeros((4, 5), np.float32), *arrays[4:])
