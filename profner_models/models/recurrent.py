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
- A GRU (PyTorch has no fused CPU GRU) runs packed when rows differ in length, as is when none is
  padded (one text at a time: packing would only cost time).
Outputs at padding are zeros, as ``pad_packed_sequence`` gives.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


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


def _packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    if bool((lengths == x.shape[1]).all()):
        out, state = rnn(x)
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    h = state[0] if isinstance(state, tuple) else state  # an LSTM gives (h, c)
    return out, torch.cat([h[-2], h[-1]], dim=-1)


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
            layer_input = nn.functional.dropout(layer_input, rnn.dropout, rnn.training)
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
    return torch.lstm(x, (zeros, zeros), weights, rnn.bias, 1, 0.0, rnn.training, False, True)[0]


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b, t]]`` for every row ``b``."""
    return x.gather(1, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))
