"""System 2 backbone ``rnn``: word vectors + char BiGRU (+ gazetteer flags) -> BiGRU/BiLSTM.

Config block (defaults: the paper's Table 3)::

    backbone:
      name: rnn
      words: {dim: 300, lowercase: true, min_count: 1, trainable: true, vectors: null,
              add_vector_words: true}
      chars: {dim: 64, hidden: 64, max_chars: 20}     # null: no character features
      gazetteer_dim: 16                               # used when data.gazetteer is set
      dropout: 0.5                                    # on the word representation
      encoder: {cell: gru, layers: 1, hidden: 512, dropout: 0.5}

Each word is ``[word vector; last states of a BiGRU over its lower-cased characters;
gazetteer flag embedding]``, and the encoder's output per word is ``2 * encoder.hidden`` wide.
``words.vectors`` is a ``profner_models.vectors`` block (load or gensim-train); with
``add_vector_words`` the vectors' words join the training words in the vocabulary, so words
unseen in training still get their pretrained vector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from profner_models.architectures.base import Backbone, BackboneContext, BackboneOutput, backbones
from profner_models.features import Vocab, char_ids, pad_ids
from profner_models.vectors import vectors_from_config

WORDS_FILE, CHARS_FILE = "vocab/words.json", "vocab/chars.json"
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}

WORD_DEFAULTS = {"dim": 300, "lowercase": True, "min_count": 1, "trainable": True,
                 "vectors": None, "add_vector_words": True}
CHAR_DEFAULTS = {"dim": 64, "hidden": 64, "max_chars": 20}
ENCODER_DEFAULTS = {"cell": "gru", "layers": 1, "hidden": 512, "dropout": 0.5}


def run_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor):
    """``rnn`` over the padded batch ``x`` (batch first): packed when rows differ in length,
    as is when none is padded (one tweet at a time: packing would only cost time)."""
    if bool((lengths == x.shape[1]).all()):
        return rnn(x)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state


def rnn_cell(cell: str) -> type[nn.RNNBase]:
    try:
        return CELLS[cell.lower()]
    except KeyError:
        raise ValueError(f"unknown RNN cell {cell!r} (gru | lstm)") from None


class RNNBackbone(Backbone):
    def __init__(self, block: dict, words: Vocab, chars: Vocab | None, gazetteer_size: int,
                 vectors=None) -> None:
        super().__init__()
        self.word_cfg = {**WORD_DEFAULTS, **block.get("words", {})}
        char_cfg = block.get("chars", CHAR_DEFAULTS)
        self.char_cfg = None if char_cfg is None else {**CHAR_DEFAULTS, **char_cfg}
        enc = {**ENCODER_DEFAULTS, **block.get("encoder", {})}
        self.words, self.chars = words, chars

        dim = vectors.dim if vectors is not None else int(self.word_cfg["dim"])
        self.word_embedding = nn.Embedding(len(words), dim, padding_idx=0)
        if vectors is not None:
            self._copy_vectors(vectors)
        self.word_embedding.weight.requires_grad_(bool(self.word_cfg["trainable"]))
        width = dim
        if self.char_cfg is not None:
            self.char_embedding = nn.Embedding(len(chars), self.char_cfg["dim"], padding_idx=0)
            self.char_rnn = nn.GRU(self.char_cfg["dim"], self.char_cfg["hidden"],
                                   batch_first=True, bidirectional=True)
            width += 2 * self.char_cfg["hidden"]
        self.gazetteer_size = gazetteer_size
        if gazetteer_size:
            self.gazetteer_embedding = nn.Embedding(gazetteer_size, block.get("gazetteer_dim", 16))
            width += self.gazetteer_embedding.embedding_dim
        self.dropout = nn.Dropout(block.get("dropout", 0.5))
        layers = int(enc["layers"])
        self.encoder = rnn_cell(enc["cell"])(
            width, int(enc["hidden"]), num_layers=layers, batch_first=True, bidirectional=True,
            dropout=float(enc["dropout"]) if layers > 1 else 0.0)
        self.output_dropout = nn.Dropout(float(enc["dropout"]))
        self.word_dim = 2 * int(enc["hidden"])
        self.sentence_dim = 0

    def _copy_vectors(self, vectors) -> None:
        index = vectors.index()
        lower = self.word_cfg["lowercase"]
        with torch.no_grad():
            for i, word in enumerate(self.words.items):
                row = index.get(word)
                if row is None and not lower:
                    row = index.get(word.lower())
                if row is not None:
                    self.word_embedding.weight[i] = torch.from_numpy(vectors.matrix[row])

    def _norm(self, word: str) -> str:
        return word.lower() if self.word_cfg["lowercase"] else word

    def featurize(self, words: Sequence[Sequence[str]],
                  gazetteer: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
        features = {
            "word_ids": pad_ids([self.words.ids(self._norm(w) for w in doc) for doc in words]),
            "lengths": torch.tensor([len(doc) for doc in words], dtype=torch.long),
        }
        if self.char_cfg is not None:
            features["char_ids"] = char_ids(words, self.chars, True, self.char_cfg["max_chars"])
        if self.gazetteer_size:
            if gazetteer is None:
                raise ValueError("this backbone was built with gazetteer features: pass flags")
            features["gazetteer"] = pad_ids(gazetteer)
        return features

    def forward(self, features: dict[str, torch.Tensor]) -> BackboneOutput:
        word_ids, lengths = features["word_ids"], features["lengths"]
        mask = torch.arange(word_ids.shape[1], device=word_ids.device)[None, :] < lengths[:, None]
        parts = [self.word_embedding(word_ids)]
        if self.char_cfg is not None:
            parts.append(self._char_states(features["char_ids"], mask))
        if self.gazetteer_size:
            parts.append(self.gazetteer_embedding(features["gazetteer"]))
        x = self.dropout(torch.cat(parts, dim=-1))
        out, _ = run_rnn(self.encoder, x, lengths)
        return BackboneOutput(words=self.output_dropout(out), mask=mask)

    def _char_states(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last forward and backward states of the char BiGRU, ``[B, W, 2 * hidden]``."""
        real = chars[mask]  # [N, C], real words only
        lengths = (real != 0).sum(-1).clamp(min=1)
        packed = pack_padded_sequence(self.char_embedding(real), lengths.cpu(),
                                      batch_first=True, enforce_sorted=False)
        _, h = self.char_rnn(packed)  # [2, N, H]
        states = torch.cat([h[0], h[1]], dim=-1)
        out = states.new_zeros((*mask.shape, states.shape[-1]))
        out[mask] = states
        return out

    def save_resources(self, model_dir: Path) -> list[str]:
        self.words.save(Path(model_dir) / WORDS_FILE)
        written = [WORDS_FILE]
        if self.chars is not None:
            self.chars.save(Path(model_dir) / CHARS_FILE)
            written.append(CHARS_FILE)
        return written


@backbones.register("rnn")
def build_rnn(block: dict, *, context: BackboneContext) -> RNNBackbone:
    word_cfg = {**WORD_DEFAULTS, **block.get("words", {})}
    use_chars = block.get("chars", CHAR_DEFAULTS) is not None
    if context.model_dir is not None:
        words = Vocab.load(Path(context.model_dir) / WORDS_FILE)
        chars = Vocab.load(Path(context.model_dir) / CHARS_FILE) if use_chars else None
        dim = int(word_cfg["dim"])
        return RNNBackbone({**block, "words": {**word_cfg, "dim": dim}}, words, chars,
                           context.gazetteer_size)
    norm = str.lower if word_cfg["lowercase"] else str
    train = [[norm(w) for w in doc] for doc in context.train_words]
    vectors = vectors_from_config(word_cfg["vectors"], lowercase=word_cfg["lowercase"],
                                  train_words=train, cache_dir=context.cache_dir)
    extra = vectors.words if vectors is not None and word_cfg["add_vector_words"] else ()
    words = Vocab.build(train, min_count=int(word_cfg["min_count"]), extra=extra)
    chars = Vocab.build(("".join(doc).lower() for doc in context.train_words)) if use_chars else None
    # The saved config must rebuild the same shapes: record the vectors' real dimension.
    block.setdefault("words", {})["dim"] = vectors.dim if vectors is not None else int(word_cfg["dim"])
    return RNNBackbone(block, words, chars, context.gazetteer_size, vectors)
