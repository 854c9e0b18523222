"""Word vectors: word2vec text/binary and fastText .vec loading, gensim training, the cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gensim.models import KeyedVectors

from profner_models.architectures import BackboneContext, backbones
from profner_models.vectors import VectorsError, WordVectors, load_vectors, train_vectors

TEXTS = [
    "Los médicos y las enfermeras trabajan en el hospital.",
    "La enfermera atiende al paciente en el hospital de día.",
    "El médico de familia y el policía local ayudan.",
    "Los sanitarios aplauden a los médicos y a las enfermeras.",
] * 5


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        (folder / ("sub" if i % 2 else "") / f"{i}.txt").write_text(text, encoding="utf-8")
    return folder


def small_kv() -> KeyedVectors:
    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["médico", "enfermera", "😷"], np.arange(12, dtype=np.float32).reshape(3, 4))
    return kv


def test_word2vec_text_binary_and_fasttext_vec_load(tmp_path):
    kv = small_kv()
    kv.save_word2vec_format(str(tmp_path / "w.txt"), binary=False)
    kv.save_word2vec_format(str(tmp_path / "w.bin"), binary=True)
    (tmp_path / "cc.es.vec").write_text(
        "3 4\nmédico 0 1 2 3\nenfermera 4 5 6 7 \n😷 8 9 10 11\n", encoding="utf-8")
    for name, fmt in (("w.txt", "auto"), ("w.bin", "auto"), ("cc.es.vec", "auto"), ("w.bin", "binary")):
        vectors = load_vectors(tmp_path / name, fmt)
        assert vectors.words == ["médico", "enfermera", "😷"], name
        np.testing.assert_array_equal(vectors.matrix, kv.vectors)
    renamed = tmp_path / "binary_without_suffix"
    renamed.write_bytes((tmp_path / "w.bin").read_bytes())
    assert load_vectors(renamed).words == ["médico", "enfermera", "😷"]


def test_bad_vectors_files_name_the_file(tmp_path):
    with pytest.raises(VectorsError, match="missing.vec"):
        load_vectors(tmp_path / "missing.vec")
    bad = tmp_path / "bad.vec"
    bad.write_text("not a header\nfoo bar\n", encoding="utf-8")
    with pytest.raises(VectorsError, match="bad.vec"):
        load_vectors(bad)


@pytest.mark.parametrize("algorithm", ["skipgram", "cbow"])
def test_train_from_folder_and_file_then_cache_hit(tmp_path, corpus, caplog, algorithm):
    lines = tmp_path / "gaz.tsv"
    lines.write_text("médico de familia\tmédico de familia\npolicía local\tpolicía local\n", encoding="utf-8")
    settings = dict(algorithm=algorithm, dim=8, window=2, min_count=1, epochs=2,
                    cache_dir=tmp_path / "cache")
    vectors = train_vectors([corpus, lines], **settings)
    assert {"médicos", "enfermera", "hospital", "familia", "local"} <= set(vectors.words)
    assert vectors.matrix.shape == (len(vectors.words), 8)
    assert len(list((tmp_path / "cache").glob("*.bin"))) == 1
    with caplog.at_level(logging.INFO, logger="profner_models.vectors"):
        again = train_vectors([corpus, lines], **settings)
    assert "cache hit" in caplog.text
    assert again.words == vectors.words
    np.testing.assert_allclose(again.matrix, vectors.matrix)
    other = train_vectors([corpus], **{**settings, "window": 3})  # other settings: other key
    assert len(list((tmp_path / "cache").glob("*.bin"))) == 2
    assert other.dim == 8


def test_train_words_source_and_empty_sources(tmp_path):
    words = [["el", "médico", "trabaja"], ["la", "médica", "trabaja"]] * 5
    vectors = train_vectors(["@train"], train_words=words, dim=4, min_count=1, epochs=1,
                            cache_dir=tmp_path)
    assert set(vectors.words) == {"el", "médico", "trabaja", "la", "médica"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(VectorsError, match="no text"):
        train_vectors([tmp_path / "empty"], dim=4, cache_dir=tmp_path)
    with pytest.raises(VectorsError, match="nowhere"):
        train_vectors([tmp_path / "nowhere"], dim=4, cache_dir=tmp_path)


def test_rnn_backbone_starts_from_the_vectors_and_freezes_them(tmp_path):
    kv = small_kv()
    kv.save_word2vec_format(str(tmp_path / "w.vec"), binary=False)
    block = {"name": "rnn", "words": {"lowercase": True, "trainable": False,
                                      "vectors": {"path": str(tmp_path / "w.vec")}},
             "chars": None, "encoder": {"hidden": 4}}
    backbone = backbones.build(block, context=BackboneContext(train_words=[["Médico", "hoy"]]))
    emb = backbone.word_embedding.weight
    assert emb.shape[1] == 4 and block["words"]["dim"] == 4  # the real dim is recorded
    assert not emb.requires_grad
    for word, row in (("médico", 0), ("😷", 2)):  # a vectors-only word joins the vocab
        np.testing.assert_array_equal(emb[backbone.words.id(word)].numpy(), kv.vectors[row])
    assert isinstance(load_vectors(tmp_path / "w.vec"), WordVectors)


def test_concat_puts_parts_side_by_side_over_the_union_of_words():
    from profner_models.vectors import concat_vectors

    first = WordVectors(["médico", "enfermera"], np.array([[1, -1], [-1, 1]], np.float32))
    second = WordVectors(["enfermera", "policía"], np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], np.float32))
    joined = concat_vectors([first, second])
    assert joined.words == ["médico", "enfermera", "policía"] and joined.dim == 5
    np.testing.assert_array_equal(joined.matrix[0], [1, -1, 0, 0, 0])  # médico: no second part
    np.testing.assert_array_equal(joined.matrix[2, :2], [0, 0])
    tail = joined.matrix[1:, 2:]  # the second part, rescaled to the first's spread
    np.testing.assert_allclose(tail / tail[0, 0], second.matrix / second.matrix[0, 0], rtol=1e-6)
    assert np.isclose(tail.std(), first.matrix.std())


def test_e5_and_concat_blocks_from_config(corpus):
    from profner_models.vectors import vectors_from_config

    vectors = vectors_from_config(
        {"concat": [{"train": {"sources": [str(corpus)], "dim": 8, "min_count": 1, "epochs": 1},
                     "cache_dir": str(corpus.parent / "cache")},
                    {"e5": {"sources": [str(corpus)]}}]}, lowercase=True)
    index = vectors.index()
    assert vectors.dim == 8 + 384 and "enfermera" in index and "Enfermera" not in index
    assert np.abs(vectors.matrix[index["enfermera"], 8:]).sum() > 0
    named = vectors_from_config({"concat": {"e5": {"e5": {"sources": [str(corpus)]}}, "off": None}},
                                lowercase=True)
    assert named.dim == 384 and set(named.words) <= set(vectors.words)
    with pytest.raises(VectorsError, match="'concat' needs a list or mapping"):
        vectors_from_config({"concat": []}, lowercase=True)
    with pytest.raises(VectorsError, match="e5 vectors need 'sources'"):
        vectors_from_config({"e5": {}}, lowercase=True)


def test_pca_keeps_the_main_directions_and_names_a_bad_size():
    from profner_models.vectors import pca_vectors

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) * 10
    vectors = WordVectors([f"w{i}" for i in range(200)], (signal + rng.normal(size=(200, 6)) * 0.01).astype(np.float32))
    reduced = pca_vectors(vectors, 2)
    assert reduced.dim == 2 and reduced.words == vectors.words
    # Two components hold all but the noise: pairwise distances survive.
    original = np.linalg.norm(vectors.matrix[:50, None] - vectors.matrix[None, :50], axis=-1)
    kept = np.linalg.norm(reduced.matrix[:50, None] - reduced.matrix[None, :50], axis=-1)
    np.testing.assert_allclose(kept, original, atol=0.1)
    with pytest.raises(VectorsError, match="pca: 7 must be in 1..6"):
        pca_vectors(vectors, 7)
