"""models.recurrent.bidirectional: a BiLSTM run as two padded passes gives what the packed
nn.LSTM gives (outputs, last states, gradients) at a fraction of the ops; a BiGRU in training
steps in C as one op each way (packed where the kernel is not built) with nn.GRU's outputs and
gradients; out of training it stays packed, and a few rows (one text, a text's new words) step
in C (or NumPy) with the same outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from profner_models import kernels
from profner_models.models import recurrent
from profner_models.models.recurrent import bidirectional, embedded_bidirectional
from profner_models.models.rnn import distinct_rows
from profner_models.opcount import OpCounter


def packed_reference(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor):
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = state[0] if isinstance(state, tuple) else state
    return out, torch.cat([h[-2], h[-1]], dim=-1)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_a_bilstm_in_two_padded_passes_is_the_packed_bilstm(layers, training) -> None:
    torch.manual_seed(layers)
    rnn = nn.LSTM(6, 5, num_layers=layers, batch_first=True, bidirectional=True).train(training)
    x = torch.randn(4, 9, 6)
    lengths = torch.tensor([9, 3, 1, 6])
    mine_x, theirs_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, last = bidirectional(rnn, mine_x, lengths)
    rnn.zero_grad()
    expected_out, expected_last = packed_reference(rnn, theirs_x, lengths)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)
    if training:
        (out.sum() + last.square().sum()).backward()
        mine = [p.grad.clone() for p in rnn.parameters()]
        rnn.zero_grad()
        (expected_out.sum() + expected_last.square().sum()).backward()
        for got, want in zip(mine, [p.grad for p in rnn.parameters()]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mine_x.grad, theirs_x.grad, rtol=1e-4, atol=1e-5)


def test_a_gru_runs_packed_and_matches_nn_gru() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(3, 7, 6), torch.tensor([7, 2, 5])
    out, last = bidirectional(rnn, x, lengths)
    expected_out, expected_last = packed_reference(rnn, x, lengths)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(last, expected_last)


@pytest.mark.parametrize("layers, bias, hidden", [(1, True, 5), (2, True, 5), (1, False, 5),
                                                  (1, True, 40)])
@pytest.mark.parametrize("uses", ["states and last", "states", "last"])
def test_a_bigru_in_training_steps_in_c_with_nn_grus_outputs_and_gradients(layers, bias, hidden,
                                                                           uses, loops) -> None:
    """The C recurrence (``gru_layer_steps``) against the packed nn.GRU: outputs, last states
    and the gradients of the input and every weight, whichever outputs the loss reads (the
    char encoder reads the last states only); hidden 40 takes the products' 32-, 16- and 8-wide
    blocks (four rows at a time while four or more step, a row alone after), 5 their remainder
    loop; without the kernel the GRU runs packed."""
    torch.manual_seed(layers + 3 * bias)
    rnn = nn.GRU(6, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                 bias=bias).train()
    x = torch.randn(5, 9, 6) * 3  # gates well into their tails too
    lengths = torch.tensor([9, 3, 1, 6, 9])
    weights_out, weights_last = torch.randn(5, 9, 2 * hidden), torch.randn(5, 2 * hidden)

    def loss(out: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return ((out * weights_out).sum() * ("states" in uses)
                + (last * weights_last).sum() * ("last" in uses))

    mine_x, theirs_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with OpCounter() as ops:
        out, last = bidirectional(rnn, mine_x, lengths)
    expected_out, expected_last = packed_reference(rnn, theirs_x, lengths)
    assert (ops.by_name["gru_layer_steps"] == layers) == (loops == "compiled"), ops.summary()
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)
    mine = torch.autograd.grad(loss(out, last), [mine_x, *rnn.parameters()])
    theirs = torch.autograd.grad(loss(expected_out, expected_last), [theirs_x, *rnn.parameters()])
    for got, want in zip(mine, theirs):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell, most", [(nn.LSTM, 200), (nn.GRU, 80)])
def test_a_trained_birnn_costs_few_ops_whatever_the_length(cell, most, loops) -> None:
    """Forward and backward of a BiLSTM (two oneDNN passes) or a BiGRU (the C recurrence) in
    training: a handful of ops however long the rows (packed, PyTorch's CPU GRU dispatches ~11
    per step and direction)."""
    if cell is nn.GRU and loops == "numpy":
        pytest.skip("without the kernel the GRU runs packed")
    torch.manual_seed(0)
    rnn = cell(16, 32, batch_first=True, bidirectional=True).train()
    x = torch.randn(16, 60, 16, requires_grad=True)
    lengths = torch.randint(1, 61, (16,))
    with OpCounter() as ops:
        out, last = bidirectional(rnn, x, lengths)
        (out.sum() + last.sum()).backward()
    assert ops.total < most, ops.summary()
    assert ops.by_name["gru_layer_steps_backward"] == (cell is nn.GRU)


def test_a_batchs_distinct_words_run_once() -> None:
    """The char encoder's rows in training: each distinct one once, every row found again."""
    rows = torch.tensor([[3, 1, 0], [2, 0, 0], [3, 1, 0], [3, 1, 2], [2, 0, 0]])
    unique, index = distinct_rows(rows)
    assert len(unique) == 3 == len({tuple(r) for r in unique.tolist()})
    assert torch.equal(unique[index], rows)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("length", [9, 4, 1])
def test_one_text_out_of_training_is_the_packed_bigru(layers, length, loops) -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, num_layers=layers, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(1, 9, 6), torch.tensor([length])
    with torch.inference_mode():
        out, last = bidirectional(rnn, x, lengths)
        expected_out, expected_last = packed_reference(rnn, x, lengths)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)
    with OpCounter() as ops:  # the recurrence ran outside torch: no per-word ops
        with torch.inference_mode():
            bidirectional(rnn, x, lengths)
    # a layer's input projection in torch (a few ops), its recurrence in C or NumPy: nothing per
    # word (nn.GRU dispatches ~11 a word and direction: ~200 here)
    assert ops.total <= 12 + 8 * layers, ops.summary()


@pytest.mark.parametrize("layers", [1, 2])
def test_a_few_rows_out_of_training_are_the_packed_bigru(layers, loops) -> None:
    """Rows of different lengths (the new words of a text through the char encoder)."""
    torch.manual_seed(layers)
    rnn = nn.GRU(6, 5, num_layers=layers, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(9, 5, 6).transpose(0, 1), torch.tensor([3, 9, 1, 6, 3])
    with torch.inference_mode():
        out, last = bidirectional(rnn, x, lengths)
        expected_out, expected_last = packed_reference(rnn, x, lengths)
        with OpCounter() as ops:
            bidirectional(rnn, x, lengths)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)
    assert ops.total <= 12 + 8 * layers, ops.summary()  # nothing per step
    same = torch.tensor([4, 4, 4, 4, 4])  # equal rows shorter than the padded width
    with torch.inference_mode():
        out, last = bidirectional(rnn, x, same)
        expected_out, expected_last = packed_reference(rnn, x, same)
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)


def test_the_stepped_bigru_follows_its_weights_when_they_change(loops) -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(1, 7, 6), torch.tensor([7])
    with torch.no_grad():
        before, _ = bidirectional(rnn, x, lengths)
        rnn.weight_hh_l0_reverse.mul_(-2.0)  # an optimiser step or load_state_dict does this
        after, _ = bidirectional(rnn, x, lengths)
        expected, _ = packed_reference(rnn, x, lengths)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-6)


def test_the_weights_kept_for_prediction_follow_a_fused_adamw_step(loops) -> None:
    """Fused AdamW updates the weights in place without bumping their versions: after a step in
    training mode, prediction reads the new weights, not the ones it kept before."""
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(2, 7, 6), torch.tensor([7, 4])
    with torch.inference_mode():
        before, _ = bidirectional(rnn, x, lengths)
    optimizer = torch.optim.AdamW(rnn.parameters(), lr=0.1, fused=True)
    rnn.train()
    bidirectional(rnn, x, lengths)[0].sum().backward()
    versions = [w._version for w in rnn.parameters()]
    optimizer.step()
    assert [w._version for w in rnn.parameters()] == versions  # what makes this test needed
    rnn.eval()
    with torch.inference_mode():
        after, _ = bidirectional(rnn, x, lengths)
        expected, _ = packed_reference(rnn, x, lengths)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-6)


def test_an_embedded_bigru_follows_both_modules_weights(loops) -> None:
    """The char encoder's path: predicting in C, the first layer's input projections of the
    embedding's rows are computed once and kept. The outputs are the packed BiGRU's over the
    embedded ids, and they follow a change of either module's weights, a fused AdamW step
    (no version bumped) included."""
    torch.manual_seed(0)
    embedding = nn.Embedding(12, 6, padding_idx=0)
    rnn = nn.GRU(6, 5, batch_first=True, bidirectional=True).eval()
    ids = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 11], [2, 0, 0, 0]])
    lengths = (ids != 0).sum(-1)

    def predicted() -> torch.Tensor:
        with torch.inference_mode():
            out, last = embedded_bidirectional(rnn, embedding, ids, lengths)
            expected_out, expected_last = packed_reference(rnn, embedding(ids), lengths)
        torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)
        return last

    before = predicted()
    with torch.no_grad():
        embedding.weight.mul_(-2.0)
    changed = predicted()
    assert not torch.allclose(before, changed)
    optimizer = torch.optim.AdamW([*rnn.parameters(), *embedding.parameters()], lr=0.1, fused=True)
    rnn.train()
    embedded_bidirectional(rnn, embedding, ids, lengths)[0].sum().backward()
    optimizer.step()
    rnn.eval()
    assert not torch.allclose(changed, predicted())


def test_an_lstm_under_cpu_bf16_autocast_runs_in_fp32_where_the_cpu_lacks_bf16(monkeypatch) -> None:
    """oneDNN has no bf16 LSTM on AVX2-only CPUs (nn.LSTM itself fails there under autocast)."""
    monkeypatch.setattr(recurrent, "_cpu_has_bf16", lambda: False)
    torch.manual_seed(0)
    rnn = nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(3, 7, 6), torch.tensor([7, 2, 5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, last = bidirectional(rnn, x, lengths)
    expected_out, expected_last = packed_reference(rnn, x, lengths)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)


def test_the_kernel_is_built_where_there_is_a_c_compiler() -> None:
    """The install compiles ``_kernels.c`` (optional: without a compiler, NumPy steps)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the NumPy steps serve")
    assert kernels.native is not None, "profner_models/_kernels.c was not built"


def test_the_kernel_saturates_like_nn_gru_on_extreme_inputs(loops) -> None:
    """Gates far in their tails (exp over- and underflow in float32) give nn.GRU's outputs."""
    torch.manual_seed(3)
    rnn = nn.GRU(4, 8, batch_first=True, bidirectional=True).eval()
    x = torch.tensor([[[300.0, -300.0, 0.0, 1e-8], [-1e4, 1e4, 50.0, -50.0],
                       [0.0, 0.0, 0.0, 0.0], [90.0, -90.0, 3.0, -3.0]]])
    with torch.inference_mode():
        out, last = bidirectional(rnn, x, torch.tensor([4]))
        expected_out, expected_last = packed_reference(rnn, x, torch.tensor([4]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last, expected_last, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden", [5, 24, 40])
def test_a_rows_training_steps_are_the_same_in_any_batch_bit_for_bit(hidden) -> None:
    """The training kernel steps four rows at a time while four or more are left: a row's
    states and gradients are exactly those of the row stepped alone (the same additions in the
    same order), so training does not change with the batch a text falls in; without the
    buffer a backward needs (prediction) the states are the same too."""
    if kernels.native is None:
        pytest.skip("the kernel is not built here")
    rng = np.random.default_rng(hidden)
    rows, steps = 7, 11
    lengths = np.array([11, 4, 11, 1, 7, 9, 11])
    gates_in = rng.standard_normal((rows, steps, 6 * hidden), dtype=np.float32)
    w_hidden = rng.standard_normal((2, hidden, 3 * hidden), dtype=np.float32) * 0.3
    b_hidden = rng.standard_normal((2, 3 * hidden), dtype=np.float32)
    d_out = rng.standard_normal((rows, steps, 2 * hidden), dtype=np.float32)
    d_last = rng.standard_normal((rows, 2 * hidden), dtype=np.float32)

    def run(index: list[int]) -> list[np.ndarray]:
        n = len(index)
        out, last = np.empty((n, steps, 2 * hidden), np.float32), np.empty((n, 2 * hidden), np.float32)
        saved = np.empty((2, n, steps, 5 * hidden), np.float32)
        kernels.native.gru_train_forward(gates_in[index], lengths[index], w_hidden, b_hidden, out,
                                         last, saved)
        d_gates_in = np.empty((n, steps, 6 * hidden), np.float32)
        d_hidden = np.empty((2, n, steps, 3 * hidden), np.float32)
        kernels.native.gru_train_backward(lengths[index], w_hidden, saved, d_out[index],
                                          d_last[index], d_gates_in, d_hidden)
        return [out, last, saved.transpose(1, 0, 2, 3), d_gates_in, d_hidden.transpose(1, 0, 2, 3)]

    together = run(list(range(rows)))
    for row in range(rows):
        for batch, alone in zip(together, run([row])):
            assert np.array_equal(batch[row], alone[0]), row
    # at prediction nothing is kept for a backward (saved None): the same states, bit for bit
    states, last, saved = recurrent.layer_steps(gates_in, lengths, w_hidden, b_hidden, keep=False)
    assert saved is None
    assert np.array_equal(states, together[0]) and np.array_equal(last, together[1])


def test_the_training_kernel_names_a_wrong_length() -> None:
    if kernels.native is None:
        pytest.skip("the kernel is not built here")
    hidden, rows, steps = 2, 2, 3
    buffers = [np.zeros((rows, steps, 6 * hidden), np.float32), np.array([3, 0]),
               np.zeros((2, hidden, 3 * hidden), np.float32), np.zeros((2, 3 * hidden), np.float32),
               np.zeros((rows, steps, 2 * hidden), np.float32), np.zeros((rows, 2 * hidden), np.float32),
               np.zeros((2, rows, steps, 5 * hidden), np.float32)]
    with pytest.raises(ValueError, match=r"lengths\[1\] = 0: must be in 1..3"):
        kernels.native.gru_train_forward(*buffers)
    buffers[1] = np.array([3, 1])
    kernels.native.gru_train_forward(*buffers)
    with pytest.raises(ValueError, match="shapes"):
        kernels.native.gru_train_forward(*buffers[:-1], buffers[-1][:, :, :2].copy())


def test_the_kernel_names_a_wrong_buffer() -> None:
    if kernels.native is None:
        pytest.skip("the kernel is not built here")
    hidden, rows, steps = 2, 1, 3
    buffers = [np.zeros((rows, steps, 6 * hidden), np.float32), np.array([3]),
               np.zeros((2, hidden, 3 * hidden), np.float32), np.zeros((2, 3 * hidden), np.float32),
               np.zeros((rows, steps, 2 * hidden), np.float32), np.zeros((rows, 2 * hidden), np.float32),
               np.zeros((2, rows, steps, 5 * hidden), np.float32)]
    wrong = list(buffers)
    wrong[2] = buffers[2].astype(np.float64)
    with pytest.raises(ValueError, match="w_hidden: expected a C-contiguous float32"):
        kernels.native.gru_train_forward(*wrong)
    with pytest.raises(ValueError, match="not writable|read-only|writable"):
        buffers[4].flags.writeable = False
        kernels.native.gru_train_forward(*buffers)

def test_host_reads_a_cpu_tensor_in_place_and_converts_the_rest() -> None:
    values = torch.arange(6, dtype=torch.float32).view(2, 3)
    read = kernels.host(values)
    values[0, 0] = 7.0  # the same memory: no copy was made
    assert read[0, 0] == 7.0 and read.dtype == np.float32
    weight = nn.Parameter(torch.ones(3))
    assert kernels.host(weight).tolist() == [1.0, 1.0, 1.0]  # out of autograd
    halves = torch.tensor([0.5, 1.5], dtype=torch.bfloat16)
    assert kernels.host(halves).dtype == np.float32 and kernels.host(halves).tolist() == [0.5, 1.5]
    assert kernels.host(torch.tensor([3, 4])).dtype == np.int64
    with OpCounter() as counter:
        kernels.host(values)
    with OpCounter() as chained:
        values.detach().float().cpu().numpy()
    assert counter.total < chained.total
