"""BERT's encoder laid out for few kernel launches: Hugging Face's ``BertModel`` maths and weights.

On a GPU a small encoder's training step costs its kernel launches, and Hugging Face's BERT
spends most of them on bookkeeping: three projections where one would do, a ``t`` per linear
layer forward and back, 3-D <-> 2-D views around every layer, a mask rebuilt per layer. Here:

- the query, key and value projections are one ``addmm`` on a fused (hidden, 3 * hidden) weight;
- every weight is stored as (in, out), so a linear layer is one ``addmm`` with no transpose;
- the hidden states stay 2-D (words x hidden) through the layers, the padding mask is built
  once, and attention is ``scaled_dot_product_attention`` (one fused kernel on a GPU; on a CPU
  in training, where PyTorch has no fused kernel with dropout, a lean ``baddbmm`` path);
- dropout is ``native_dropout``, one op each way on every device.

Counted with ``profner_models.opcount`` (``bench/training.py``), a ``transformer_e5`` training
step (batch 16, dropout on) dispatches 1,459 ops, 758 of them kernels, where the same step
through ``BertModel`` dispatches 2,681 (1,110).

The arithmetic is BERT's (post-norm residual blocks, absolute positions, token type 0, the
checkpoint's activation), so outputs and gradients equal ``BertModel``'s to float rounding
(``tests/test_bert.py``). ``state_dict`` speaks Hugging Face's names and shapes (query / key /
value apart, (out, in) weights) and ``load_state_dict`` reads them, so model dirs keep one
format whichever module ran, and a BERT checkpoint loads as it is.

``FusedBert.supports(config)`` says which configs it runs (BERT's ``model_type``, an encoder
with absolute positions and a GELU/ReLU activation); the transformer backbone keeps Hugging
Face's module for any other (DistilBERT, XLM-R, ...).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import skip_init

# Hugging Face activation name -> nn.functional.gelu's approximate argument (None: ReLU)
_ACTIVATIONS = {"gelu": "none", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh", "relu": None}

# our tensor (under layers.{i}.) -> Hugging Face's tensors (under encoder.layer.{i}.); weights
# are concatenated along the output dim and stored transposed, biases concatenated
_LAYER_TENSORS = {
    "qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "out": ("attention.output.dense",),
    "up": ("intermediate.dense",),
    "down": ("output.dense",),
}
_LAYER_NORMS = {"attention_norm": "attention.output.LayerNorm", "output_norm": "output.LayerNorm"}


class EncoderOutput(NamedTuple):
    """What the backbone reads of ``BertModel``'s output, under the same names."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    """With ``output_hidden_states``: the embeddings' output, then each layer's."""


class FusedBertLayer(nn.Module):
    """One post-norm transformer block: fused self-attention, then the feed-forward net."""

    def __init__(self, hidden: int, intermediate: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv_weight = nn.Parameter(torch.empty(hidden, 3 * hidden))
        self.qkv_bias = nn.Parameter(torch.zeros(3 * hidden))
        self.out_weight = nn.Parameter(torch.empty(hidden, hidden))
        self.out_bias = nn.Parameter(torch.zeros(hidden))
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.up_weight = nn.Parameter(torch.empty(hidden, intermediate))
        self.up_bias = nn.Parameter(torch.zeros(intermediate))
        self.down_weight = nn.Parameter(torch.empty(intermediate, hidden))
        self.down_bias = nn.Parameter(torch.zeros(hidden))
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None, rows: int,
                dropout: tuple[float, float], approximate: str | None) -> torch.Tensor:
        """``states``: (rows * width, hidden); ``mask``: (rows, heads, 1, width), 0 where a piece
        is read, -inf at padding; ``dropout``: (hidden, attention) probabilities in training."""
        words, hidden = states.shape
        hidden_p, attention_p = dropout if self.training else (0.0, 0.0)
        qkv = torch.addmm(self.qkv_bias, states, self.qkv_weight)
        heads = qkv.view(rows, words // rows, 3, self.heads, hidden // self.heads)
        attended = _attention(heads.permute(2, 0, 3, 1, 4), mask, attention_p)
        attended = attended.transpose(1, 2).reshape(words, hidden)
        states = self.attention_norm(
            _dropout(torch.addmm(self.out_bias, attended, self.out_weight), hidden_p) + states)
        inner = torch.addmm(self.up_bias, states, self.up_weight)
        if approximate is None:
            inner = nn.functional.relu(inner)
        else:
            inner = nn.functional.gelu(inner, approximate=approximate)
        return self.output_norm(
            _dropout(torch.addmm(self.down_bias, inner, self.down_weight), hidden_p) + states)


class FusedBertEmbeddings(nn.Module):
    """BERT's embeddings under Hugging Face's names: word + position + token type 0, then norm."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        hidden = config.hidden_size
        # uninitialised, as every weight here: a FusedBert is always filled from a checkpoint
        # (``from_hugging_face``, or a model dir's weights), and initialising e5's
        # 250k-piece table costs seconds
        self.word_embeddings = skip_init(nn.Embedding, config.vocab_size, hidden,
                                         padding_idx=config.pad_token_id)
        self.position_embeddings = skip_init(nn.Embedding, config.max_position_embeddings, hidden)
        self.token_type_embeddings = skip_init(nn.Embedding, config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(rows, width) piece ids -> (rows * width, hidden) states (before dropout)."""
        rows, width = input_ids.shape
        # position and type tables are read by slicing: a view, not a gather
        fixed = self.position_embeddings.weight[:width] + self.token_type_embeddings.weight[0]
        words = self.word_embeddings(input_ids) + fixed
        return self.LayerNorm(words.view(rows * width, -1))


class FusedBert(nn.Module):
    """``BertModel`` without its pooler, for the transformer backbone (module docstring)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        reason = self.supports(config)
        if reason:
            raise ValueError(f"FusedBert cannot run this encoder: {reason}")
        self.config = config
        self.approximate = _ACTIVATIONS[config.hidden_act]
        self.dropout = (float(config.hidden_dropout_prob),
                        float(config.attention_probs_dropout_prob))
        self.embeddings = FusedBertEmbeddings(config)
        self.layers = nn.ModuleList(
            FusedBertLayer(config.hidden_size, config.intermediate_size,
                           config.num_attention_heads, config.layer_norm_eps)
            for _ in range(config.num_hidden_layers))
        self.register_state_dict_post_hook(_to_hugging_face)
        self.register_load_state_dict_pre_hook(_from_hugging_face)

    @staticmethod
    def supports(config: Any) -> str | None:
        """None when this module computes what ``BertModel`` does for ``config``, else why not."""
        checks = [
            (getattr(config, "model_type", None) == "bert", "model_type is not 'bert'"),
            (not getattr(config, "is_decoder", False), "a decoder"),
            (not getattr(config, "add_cross_attention", False), "cross-attention"),
            (getattr(config, "position_embedding_type", "absolute") == "absolute",
             "relative positions"),
            (isinstance(getattr(config, "hidden_act", None), str)
             and config.hidden_act in _ACTIVATIONS, "its activation"),
            (not getattr(config, "chunk_size_feed_forward", 0), "chunked feed-forward"),
        ]
        return next((why for ok, why in checks if not ok), None)

    @classmethod
    def from_hugging_face(cls, model: nn.Module) -> "FusedBert":
        """The same encoder as the loaded Hugging Face ``BertModel`` ``model`` (its pooler aside)."""
        fused = cls(model.config)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("pooler.")}
        fused.load_state_dict(state, strict=True)
        return fused

    def get_input_embeddings(self) -> nn.Embedding:
        """The piece table (Hugging Face's accessor: ``freeze_embeddings`` uses it)."""
        return self.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False) -> EncoderOutput:
        """(rows, width) piece ids and 0/1 mask -> (rows, width, hidden) last hidden states
        (and, with ``output_hidden_states``, every layer's, as ``BertModel`` gives them)."""
        rows, width = input_ids.shape
        states = _dropout(self.embeddings(input_ids), self.dropout[0] if self.training else 0.0)
        heads = self.config.num_attention_heads
        mask = torch.zeros((rows, heads, 1, width), dtype=states.dtype, device=states.device)
        mask.masked_fill_((attention_mask == 0)[:, None, None, :], float("-inf"))
        every = [states] if output_hidden_states else None
        for layer in self.layers:
            states = layer(states, mask, rows, self.dropout, self.approximate)
            if every is not None:
                every.append(states)
        return EncoderOutput(states.view(rows, width, -1),
                             None if every is None else tuple(s.view(rows, width, -1) for s in every))


def _attention(qkv: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """Scaled dot-product attention of ``qkv`` (3, rows, heads, width, head size) under the
    additive ``mask`` (rows, heads, 1, width, contiguous): (rows, heads, width, head size).

    ``scaled_dot_product_attention`` is one fused kernel on a GPU and, without dropout, on a
    CPU; PyTorch's CPU kernel has no dropout, and the math fallback it takes then dispatches
    ~45 ops a layer. Here the same maths in ~30: one ``baddbmm`` scores and masks, then softmax,
    dropout and one ``bmm``."""
    _, rows, heads, width, size = qkv.shape
    if qkv.is_cuda or p == 0:
        return nn.functional.scaled_dot_product_attention(*qkv.unbind(0), attn_mask=mask, dropout_p=p)
    query, key, value = qkv.reshape(3, rows * heads, width, size).unbind(0)
    scores = torch.baddbmm(mask.view(rows * heads, 1, width), query, key.transpose(1, 2),
                           alpha=size ** -0.5)
    weights = _dropout(torch.softmax(scores, dim=-1), p)
    return torch.bmm(weights, value).view(rows, heads, width, size)


def _dropout(tensor: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout as one op forward and one back: ``nn.functional.dropout`` runs ``native_dropout`` on a GPU
    but, on a CPU, four (empty_like, bernoulli_, div_, mul); the same Bernoulli mask scaled by
    1 / (1 - p) either way."""
    return torch.native_dropout(tensor, p, True)[0] if p > 0 else tensor


def _to_hugging_face(module: FusedBert, state: dict[str, torch.Tensor], prefix: str,
                     metadata: Any) -> None:
    """state_dict post-hook: our layer tensors -> Hugging Face's names and (out, in) shapes."""
    for index in range(len(module.layers)):
        ours, theirs = f"{prefix}layers.{index}.", f"{prefix}encoder.layer.{index}."
        for name, parts in _LAYER_TENSORS.items():
            weights = state.pop(f"{ours}{name}_weight").t().chunk(len(parts))
            biases = state.pop(f"{ours}{name}_bias").chunk(len(parts))
            for part, weight, bias in zip(parts, weights, biases):
                state[f"{theirs}{part}.weight"] = weight.contiguous()
                state[f"{theirs}{part}.bias"] = bias.clone()
        for name, part in _LAYER_NORMS.items():
            for kind in ("weight", "bias"):
                state[f"{theirs}{part}.{kind}"] = state.pop(f"{ours}{name}.{kind}")


def _from_hugging_face(module: FusedBert, state: dict[str, torch.Tensor], prefix: str,
                       *args: Any) -> None:
    """load_state_dict pre-hook: Hugging Face's layer tensors -> ours (absent ones stay
    absent, so strict loading still names what is missing)."""
    for index in range(len(module.layers)):
        ours, theirs = f"{prefix}layers.{index}.", f"{prefix}encoder.layer.{index}."
        for name, parts in _LAYER_TENSORS.items():
            keys = [f"{theirs}{part}" for part in parts]
            if all(f"{key}.weight" in state and f"{key}.bias" in state for key in keys):
                state[f"{ours}{name}_weight"] = torch.cat(
                    [state.pop(f"{key}.weight") for key in keys]).t().contiguous()
                state[f"{ours}{name}_bias"] = torch.cat([state.pop(f"{key}.bias") for key in keys])
        for name, part in _LAYER_NORMS.items():
            for kind in ("weight", "bias"):
                if f"{theirs}{part}.{kind}" in state:
                    state[f"{ours}{name}.{kind}"] = state.pop(f"{theirs}{part}.{kind}")
