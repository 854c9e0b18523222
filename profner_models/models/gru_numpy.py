"""A bidirectional GRU's prediction in NumPy, over a few rows on a CPU, where the C kernel
(``_kernels.c``) is not built: what ``recurrent.bidirectional`` runs then for the latency of one
text (PyTorch's CPU GRU dispatches ~11 ops per step and direction, an ``addmm`` alone ~4 us;
these loops step both directions of every row at once, ~18 us a word for hidden 96)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from profner_models.kernels import host
from profner_models.models.memo import kept

NUMPY_ROWS = 8  # at most this many rows step in NumPy
# ... while one step's product (m * n * k) stays under OpenBLAS's threading threshold
# (65536 * 4): its threads ignore torch.set_num_threads and spin on a busy machine
BLAS_SERIAL = 65536 * 4


def gru_numpy(rnn: nn.GRU, x: np.ndarray, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``recurrent.bidirectional`` for a few rows on a CPU, in eval mode and without autograd:
    every row's states ``[B, W, 2H]`` and last states ``[B, 2H]``."""
    hidden = rnn.hidden_size
    width, shortest = int(lengths.max()), int(lengths.min())
    real = backwards = None  # rows of one length (one text): a row reversed is a slice
    if shortest < width:
        positions = np.arange(width)[None, :]
        real = (positions < lengths[:, None])[..., None]
        # each row read backwards within its length (padding stays after the real steps)
        backwards = np.where(real[..., 0], lengths[:, None] - 1 - positions, positions)
    layer_input = x[:, :width]
    with np.errstate(over="ignore"):  # exp overflowing to inf gives a gate of exactly 0
        for weights in kept(rnn, "numpy", lambda: _numpy_weights(rnn)):
            layer_input = _gru_layer(layer_input, backwards, *weights, hidden)
            if real is not None:
                layer_input *= real
    rows = np.arange(len(lengths))
    last = np.concatenate([layer_input[rows, lengths - 1, :hidden], layer_input[:, 0, hidden:]],
                          axis=1)
    out = np.zeros((x.shape[0], x.shape[1], 2 * hidden), np.float32)
    out[:, :width] = layer_input
    return torch.from_numpy(out), torch.from_numpy(last)


def _numpy_weights(rnn: nn.GRU) -> list[tuple[np.ndarray, ...]]:
    """Per layer: input weights ``[D, 6H]`` and biases ``[6H]`` of both directions (forward
    then backward; reset/update columns negated so a gate is ``1 / (1 + exp(.))``, the hidden
    biases of those gates added in), hidden weights ``[2, H, 3H]`` and the new gate's hidden
    bias ``[2, 1, H]``."""
    hidden = rnn.hidden_size
    sign = np.concatenate([-np.ones(2 * hidden), np.ones(hidden)]).astype(np.float32)
    gates_only = np.concatenate([np.ones(2 * hidden), np.zeros(hidden)]).astype(np.float32)

    def weight(name: str) -> np.ndarray:
        tensor = getattr(rnn, name, None)
        return np.zeros(3 * hidden, np.float32) if tensor is None else host(tensor)

    layers = []
    for layer in range(rnn.num_layers):
        ins, biases, hiddens, hidden_biases = [], [], [], []
        for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
            ins.append(weight("weight_ih" + suffix).T * sign)
            biases.append((weight("bias_ih" + suffix) + weight("bias_hh" + suffix) * gates_only) * sign)
            hiddens.append(weight("weight_hh" + suffix).T * sign)
            hidden_biases.append(weight("bias_hh" + suffix)[None, 2 * hidden:])
        layers.append(tuple(np.ascontiguousarray(a, np.float32) for a in (
            np.concatenate(ins, axis=1), np.concatenate(biases), np.stack(hiddens),
            np.stack(hidden_biases))))
    return layers


def _gru_layer(x: np.ndarray, backwards: np.ndarray | None, w_in: np.ndarray, b_in: np.ndarray,
               w_hidden: np.ndarray, b_new: np.ndarray, hidden: int) -> np.ndarray:
    """One bidirectional GRU layer over ``x`` ``[B, T, D]`` -> ``[B, T, 2H]`` (garbage past a
    row's length); ``backwards[b, t]``: the step the backward direction reads at ``t`` (the row
    reversed within its length; None: rows without padding, reversed whole). Both directions
    step together as a batch of ``2B`` (``h = n + z * (h - n)``, ``n = tanh(x_n + r * (W_hn h +
    b_hn))``)."""
    rows, steps, _ = x.shape
    # torch, not numpy, for the one matrix product big enough for NumPy's BLAS to spread over
    # threads of its own: those ignore torch.set_num_threads and, on a busy machine, spin
    # against the other processes (a tweet's GRU 9 ms instead of 1.3 ms at load 2; as in
    # vectors/compose.py)
    projected = torch.from_numpy(np.ascontiguousarray(x)) @ torch.from_numpy(w_in)
    projected = projected.numpy() + b_in
    gates_in = np.empty((steps, 2, rows, 3 * hidden), np.float32)
    gates_in[:, 0] = projected[..., : 3 * hidden].transpose(1, 0, 2)
    reverse = projected[:, ::-1, 3 * hidden:] if backwards is None else np.take_along_axis(
        projected[..., 3 * hidden:], backwards[..., None], axis=1)
    gates_in[:, 1] = reverse.transpose(1, 0, 2)
    out = _numpy_steps(gates_in, w_hidden, b_new)
    backward = out[1][:, ::-1] if backwards is None else np.take_along_axis(
        out[1], backwards[..., None], axis=1)
    return np.concatenate([out[0], backward], axis=2)


def _numpy_steps(gates_in: np.ndarray, w_hidden: np.ndarray, b_new: np.ndarray) -> np.ndarray:
    """Every step's state ``[2, B, T, H]`` of both directions from their input projections
    ``gates_in`` ``[T, 2, B, 3H]``. Every per-step array is contiguous and every call counts:
    this loop is the latency."""
    hidden = w_hidden.shape[1]
    given_reset_update = list(np.ascontiguousarray(gates_in[..., : 2 * hidden]))
    given_new = list(np.ascontiguousarray(gates_in[..., 2 * hidden:]))
    h = np.zeros(gates_in.shape[1:3] + (hidden,), np.float32)
    states = []
    for step in range(len(given_new)):
        gates = np.matmul(h, w_hidden)
        reset_update = given_reset_update[step] + gates[..., : 2 * hidden]
        np.exp(reset_update, out=reset_update)
        reset_update += 1.0
        np.reciprocal(reset_update, out=reset_update)
        new = gates[..., 2 * hidden:] + b_new
        new *= reset_update[..., :hidden]
        new += given_new[step]
        np.tanh(new, out=new)
        h = h - new
        h *= reset_update[..., hidden:]
        h += new
        states.append(h)
    return np.stack(states, axis=2)
