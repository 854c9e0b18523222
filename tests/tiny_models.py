"""Tiny transformer fixtures built locally (no hub): a random BERT and its WordPiece vocab."""

from __future__ import annotations

from pathlib import Path

SPANISH = [
    "La enfermera del hospital atendió al paciente por la mañana.",
    "El médico de familia trabaja en un centro de salud de Madrid.",
    "Los sanitarios piden más protección frente al coronavirus.",
    "Mi padre es camionero y mi madre, maestra de primaria jubilada.",
    "La Guardia Civil y la Policía Nacional vigilan el confinamiento.",
    "Está en paro desde marzo; antes fue camarero en un bar.",
    "#YoMeQuedoEnCasa gracias a los trabajadores de los supermercados 👏",
    "@sanidadgob el ministro de Sanidad comparece hoy. https://t.co/abc",
    "Paciente de 45 años, agricultor, sin antecedentes de interés.",
    "Los periodistas, los farmacéuticos y los bomberos también trabajan.",
]


def build_tiny_bert(directory: Path | str) -> Path:
    """Write a random BertModel (hidden 32, 2 layers, 2 heads, intermediate 64) and a WordPiece
    tokenizer trained on a few Spanish sentences to ``directory``; both load with
    ``AutoModel/AutoTokenizer.from_pretrained(directory)``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(SPANISH * 3, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    fast.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    return directory
