"""Bidirectional recurrent layers over padded batches: ``bidirectional(rnn, x, lengths)``.

One function for every BiGRU / BiLSTM of the models (the RNN backbone's encoder and char
encoder, the ``rnn_pooler`` head, the transformer's optional BiLSTM); it returns every word's
output and the last states of both directions, as a packed ``nn.GRU``/``nn.LSTM`` would:

- An LSTM runs as two unidirectional passes over the padded batch, the backward one over each
  row reversed within its length (padding stays at the end, after the real words, so it never
  reaches a real word's state). Unpacked, the CPU runs each pass as one oneDNN kernel forward
  and one backward, where a packed or GRU layer is dispatched one time step at a time
  (``profner_models.opcount``: a 50-word batch ~5,000 ops vs ~50); cuDNN runs both as one op.
  Same parameters, same maths as ``nn.LSTM(bidirectional=True)`` on packed input
  (``tests/test_recurrent.py``).
- A GRU in training on a CPU (PyTorch has no fused CPU GRU) runs each layer as one matrix
  product for both directions' input projections and one op for the recurrence
  (``gru_layer_steps``, a ``torch.library`` op with its backward: C loops over each row's
  length, the rows stepping together, their hidden products four rows at a time,
  ``_kernels.c``; the hidden weights' gradient one matrix product): ~470 ops a
  training step of ``rnn`` where the packed GRU dispatched ~6,000 (one per time step and
  direction, ~11 each), and the step 82 -> 73 ms (``bench/README.md``). Elsewhere (a GPU: cuDNN;
  bf16 autocast; no kernel built) a GRU runs packed when rows differ in length, as is when none
  is padded. Out of training, a few rows (``few_rows``) on a CPU (the latency of ``profner
  predict`` and of a server's lone request: one text's words, the new words of a text through
  the char encoder) step in the same C kernel, the joined weights kept per module until one
  changes (the char encoder's first-layer input projections too, one row per character:
  ``embedded_bidirectional``); without the kernel, in NumPy (~18 us a word for hidden 96, against ~11 ops per step
  and direction for PyTorch's CPU GRU, an ``addmm`` alone ~4 us), both directions of every row
  at once, the reset/update gates' signs and biases folded into the weights once. Over more
  rows the packed GRU's bigger products win. Same maths (``tests/test_recurrent.py``: outputs
  equal to ``nn.GRU``'s to 1e-5, both step paths); ``bench/README.md`` has the timing.
Outputs at padding are zeros, as ``pad_packed_sequence`` gives.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from profner_models.config import Schema
from profner_models.kernels import compiled, host
from profner_models.models.dropout import dropout
from profner_models.models.gru_numpy import BLAS_SERIAL, NUMPY_ROWS, gru_numpy
from profner_models.models.memo import forget, kept


class EncoderConfig(Schema):
    """A recurrent encoder block: ``{cell, layers, hidden, dropout}`` (a bidirectional one)."""

    cell: Literal["gru", "lstm"] = "gru"
    layers: int = Field(1, ge=1)
    hidden: int = Field(512, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
# Out of training a GRU steps in C over at most this many rows x hidden^2 (its hidden products'
# size per step): past it the packed GRU's matrix products win (hidden 96: ~64 rows, hidden 32:
# > 128, hidden 256: ~6; bench/README.md)
KERNEL_PRODUCT = 400_000


def rnn_cell(cell: str) -> type[nn.RNNBase]:
    try:
        return CELLS[cell.lower()]
    except KeyError:
        raise ValueError(f"unknown RNN cell {cell!r} (gru | lstm)") from None


def bidirectional(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs ``[B, W, 2H]``, last states of the top layer ``[B, 2H]``: forward after each
    row's last word, backward after its first) of a batch-first bidirectional ``rnn``."""
    if isinstance(rnn, nn.LSTM) and rnn.proj_size == 0:
        return _lstm_passes(rnn, x, lengths)
    return _packed(rnn, x, lengths)


def embedded_bidirectional(rnn: nn.RNNBase, embedding: nn.Embedding, ids: torch.Tensor,
                           lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``bidirectional(rnn, embedding(ids), lengths)``. A GRU predicting in C reads its first
    layer's input projections from the embedding's rows projected once (kept until a weight of
    either changes): a gather where a tweet's new words paid a matrix product."""
    if (isinstance(rnn, nn.GRU) and not rnn.training and not torch.is_grad_enabled()
            and _steps_in_c(rnn, ids.shape[0], embedding.weight, lengths)):
        table = kept(rnn, "embedded", lambda: _projected_rows(rnn, embedding.weight), also=embedding)
        return _gru_predicting(rnn, None, lengths, torch.from_numpy(host(table)[host(ids)]))
    return bidirectional(rnn, embedding(ids), lengths)


def _projected_rows(rnn: nn.GRU, rows: torch.Tensor) -> torch.Tensor:
    """``rows`` through both directions' first-layer input projections ``[N, 6H]``."""
    with torch.inference_mode(False), torch.no_grad():  # read in and out of inference mode
        w_in, b_in, _, _ = _kept_weights(rnn)[0]
        return nn.functional.linear(rows, w_in, b_in)


def _packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    if rnn.training:  # its weights change while it trains: what it kept for prediction goes
        forget(rnn)
    if isinstance(rnn, nn.GRU) and _steps_in_c(rnn, x.shape[0], x, lengths):
        return _gru_in_c(rnn, x, lengths)
    if (isinstance(rnn, nn.GRU) and compiled() is None and not rnn.training
            and few_rows(x.shape[0], rnn.hidden_size) and x.device.type == "cpu"
            and x.dtype == torch.float32 and not torch.is_grad_enabled()):
        row_lengths = host(lengths)
        if len(row_lengths) and row_lengths.min() > 0:
            return gru_numpy(rnn, x.detach().numpy(), row_lengths)
    if bool((lengths == x.shape[1]).all()):
        out, state = rnn(x)
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = state[0] if isinstance(state, tuple) else state  # an LSTM gives (h, c)
    return out, torch.cat([h[-2], h[-1]], dim=-1)


def _steps_in_c(rnn: nn.GRU, rows: int, like: torch.Tensor, lengths: torch.Tensor) -> bool:
    """Whether the C kernel runs this GRU over ``rows`` rows of ``like``'s device and dtype: on
    a CPU in float32 without autocast, in training (any batch) or out of it over few rows
    (``few_rows``)."""
    return (compiled() is not None and like.device.type == "cpu" and like.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and rows > 0
            and (rnn.training or few_rows(rows, rnn.hidden_size))
            and bool(host(lengths).min() > 0))


def _gru_in_c(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``_packed`` in C: per layer, one matrix product for the input projections of both
    directions, then the recurrence over each row's length (``layer_steps``): as one op with
    its backward where autograd records (``gru_layer_steps``), else called directly on the
    weights kept for prediction (``_kept_weights``; the op's dispatch and the weights' joining
    cost a tweet's word BiGRU ~0.1 ms, a third of its time)."""
    if not torch.is_grad_enabled():
        return _gru_predicting(rnn, x, lengths)
    lengths = lengths.cpu().long()
    layer_input = x
    for layer, (w_in, b_in, w_hidden, b_hidden) in enumerate(_joined_weights(rnn)):
        if layer:
            layer_input = dropout(layer_input, rnn.dropout, rnn.training)
        projected = nn.functional.linear(layer_input, w_in, b_in)
        layer_input, last, _ = gru_layer_steps(projected, lengths, w_hidden, b_hidden)
    return layer_input, last


def _gru_predicting(rnn: nn.GRU, x: torch.Tensor | None, lengths: torch.Tensor,
                    first_gates: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``first_gates``: the first layer's input projections, given in place of ``x``."""
    row_lengths = np.ascontiguousarray(host(lengths), np.int64)
    layer_input, last = x, None
    for layer, (w_in, b_in, w_hidden, b_hidden) in enumerate(_kept_weights(rnn)):
        if layer:
            layer_input = dropout(layer_input, rnn.dropout, rnn.training)
        projected = (first_gates if layer == 0 and first_gates is not None
                     else nn.functional.linear(layer_input, w_in, b_in))
        states, last, _ = layer_steps(projected.numpy(), row_lengths, w_hidden, b_hidden, keep=False)
        layer_input = torch.from_numpy(states)
    return layer_input, torch.from_numpy(last)


LayerWeights = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]


def _joined_weights(rnn: nn.GRU) -> list[LayerWeights]:
    """Per layer: ``W_ih`` ``[6H, D]`` and ``b_ih`` ``[6H]`` of both directions, ``W_hh^T`` per
    direction ``[2, H, 3H]`` and ``b_hh`` ``[2, 3H]``."""
    layers = []
    for layer in range(rnn.num_layers):
        directions = [f"_l{layer}", f"_l{layer}_reverse"]
        layers.append((
            torch.cat([getattr(rnn, "weight_ih" + d) for d in directions]),
            torch.cat([getattr(rnn, "bias_ih" + d) for d in directions]) if rnn.bias else None,
            torch.stack([getattr(rnn, "weight_hh" + d).t() for d in directions]),
            (torch.stack([getattr(rnn, "bias_hh" + d) for d in directions]) if rnn.bias
             else rnn.weight_hh_l0.new_zeros(2, 3 * rnn.hidden_size))))
    return layers


def _kept_weights(rnn: nn.GRU) -> list[tuple[torch.Tensor, torch.Tensor | None, np.ndarray, np.ndarray]]:
    """``_joined_weights`` out of autograd, the hidden ones as NumPy arrays, kept until a weight
    changes (``memo.kept``)."""
    def build() -> list:
        with torch.inference_mode(False), torch.no_grad():  # read in and out of inference mode
            return [(w_in, b_in, w_hidden.numpy(), b_hidden.numpy())
                    for w_in, b_in, w_hidden, b_hidden in _joined_weights(rnn)]
    return kept(rnn, "c", build)


def layer_steps(gates_in: np.ndarray, lengths: np.ndarray, w_hidden: np.ndarray,
                b_hidden: np.ndarray, keep: bool = True
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A bidirectional GRU layer's recurrence over each row's length (``_kernels.c``,
    ``train_forward``): the states ``[B, T, 2H]`` (zeros at padding), each direction's last
    ``[B, 2H]`` and what the backward needs ``[2, B, T, 5H]`` (``keep``; else None: nothing
    written for it), from the input projections of both directions ``gates_in`` ``[B, T, 6H]``,
    ``lengths`` ``[B]`` int64, ``W_hh^T`` per direction ``[2, H, 3H]`` and ``b_hh`` ``[2, 3H]``
    (float32, C-contiguous)."""
    rows, steps, gates = gates_in.shape
    hidden = gates // 6
    states = np.empty((rows, steps, 2 * hidden), np.float32)
    last = np.empty((rows, 2 * hidden), np.float32)
    saved = np.empty((2, rows, steps, 5 * hidden), np.float32) if keep else None
    compiled().gru_train_forward(np.ascontiguousarray(gates_in), lengths, w_hidden, b_hidden,
                                 states, last, saved)
    return states, last, saved


@torch.library.custom_op("profner::gru_layer_steps", mutates_args=())
def gru_layer_steps(gates_in: torch.Tensor, lengths: torch.Tensor, w_hidden: torch.Tensor,
                    b_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``layer_steps`` as one op to the dispatcher, as cuDNN's GRU is on a GPU, with its
    backward (``register_autograd`` below)."""
    return tuple(torch.from_numpy(a) for a in layer_steps(
        *(t.contiguous().numpy() for t in (gates_in, lengths, w_hidden, b_hidden))))


@torch.library.custom_op("profner::gru_layer_steps_backward", mutates_args=())
def gru_layer_steps_backward(lengths: torch.Tensor, w_hidden: torch.Tensor, saved: torch.Tensor,
                             d_states: torch.Tensor | None, d_last: torch.Tensor | None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``gru_layer_steps``' inputs from those of its states and last states (None:
    unused): the steps back in C (``train_backward``), then the hidden weights' as one matrix
    product over every row and step."""
    _, rows, steps, saved_units = saved.shape
    hidden = saved_units // 5
    d_gates_in = saved.new_empty(rows, steps, 6 * hidden)
    d_hidden = saved.new_empty(2, rows * steps, 3 * hidden)
    compiled().gru_train_backward(
        *(None if t is None else t.contiguous().numpy()
          for t in (lengths, w_hidden, saved, d_states, d_last)),
        d_gates_in.numpy(), d_hidden.view(2, rows, steps, -1).numpy())
    previous = saved[..., 4 * hidden:].reshape(2, rows * steps, hidden)
    return d_gates_in, previous.transpose(1, 2) @ d_hidden, d_hidden.sum(1)


def _keep_for_backward(ctx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(inputs[1], inputs[2], output[2])
    ctx.mark_non_differentiable(output[2])
    ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros


def _backward(ctx, d_states: torch.Tensor | None, d_last: torch.Tensor | None, _: None
              ) -> tuple[torch.Tensor | None, ...]:
    d_gates_in, d_w_hidden, d_b_hidden = gru_layer_steps_backward(*ctx.saved_tensors, d_states, d_last)
    return d_gates_in, None, d_w_hidden, d_b_hidden


gru_layer_steps.register_autograd(_backward, setup_context=_keep_for_backward)


def few_rows(rows: int, hidden: int) -> bool:
    """Whether a GRU over ``rows`` rows steps faster in C (or, unbuilt, in NumPy) than packed."""
    if compiled() is not None:
        return rows * hidden ** 2 <= KERNEL_PRODUCT
    return rows <= NUMPY_ROWS and (rows == 1 or rows * 3 * hidden ** 2 < BLAS_SERIAL)


def _lstm_passes(rnn: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    batch, width, _ = x.shape
    positions = torch.arange(width, device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    real = positions < lengths
    reverse = torch.where(real, lengths - 1 - positions, positions)  # within each row's length
    # what nn.LSTM.forward hands its kernel: per layer, forward (w_ih, w_hh[, b_ih, b_hh]),
    # then the reverse direction's
    weights = rnn._flat_weights
    per_direction = len(weights) // (2 * rnn.num_layers)
    zeros = x.new_zeros(1, batch, rnn.hidden_size)
    layer_input = x
    for layer in range(rnn.num_layers):
        if layer:
            layer_input = dropout(layer_input, rnn.dropout, rnn.training)
        start = 2 * layer * per_direction
        forward = _pass(rnn, layer_input, weights[start:start + per_direction], zeros)
        flipped = _gather(layer_input, reverse)
        backward = _gather(_pass(rnn, flipped, weights[start + per_direction:start + 2 * per_direction],
                                 zeros), reverse)
        layer_input = torch.cat([forward, backward], dim=-1)
    out = layer_input * real.unsqueeze(-1).to(layer_input.dtype)
    last_forward = _gather(forward, (lengths - 1).expand(batch, 1))[:, 0]
    return out, torch.cat([last_forward, backward[:, 0]], dim=-1)


def _pass(rnn: nn.LSTM, x: torch.Tensor, weights: list[torch.Tensor], zeros: torch.Tensor
          ) -> torch.Tensor:
    """One direction of one layer: ``nn.LSTM``'s own kernel with that direction's weights."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not _cpu_has_bf16():
        # oneDNN has no bf16 LSTM where the CPU lacks native bf16 (AVX2 only): under bf16
        # autocast nn.LSTM itself fails there ("could not create a primitive descriptor"), so
        # this layer runs in fp32 (bf16 buys such a CPU nothing but conversions)
        with torch.autocast("cpu", enabled=False):
            return _pass(rnn, x.float(), weights, zeros.float())
    return torch.lstm(x, (zeros, zeros), weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]


@functools.cache
def _cpu_has_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for every row ``b``."""
    return x.gather(1, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))
