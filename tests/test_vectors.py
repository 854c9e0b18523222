"""Word vectors: files, gensim skip-gram / CBOW / FastText and the cache, e5, spaces (concat,
PCA), unknown words, held-out documents."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from profner_models.documents import Document
from profner_models.models import BackboneContext, backbones
from profner_models.vectors import (
    FastTextPart,
    HeldOut,
    StaticPart,
    VectorsError,
    VectorSpace,
    WordVectors,
    concat,
    load_vectors,
    space_from_config,
    train_part,
)
from profner_models.vectors.sources import corpus_words

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
    vectors = train_part([corpus, lines], **settings)
    assert isinstance(vectors, StaticPart) and not vectors.extends
    assert {"médicos", "enfermera", "hospital", "familia", "local"} <= set(vectors.words)
    assert vectors.matrix.shape == (len(vectors.words), 8)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    with caplog.at_level(logging.INFO, logger="profner_models.vectors"):
        again = train_part([corpus, lines], **settings)
    assert "cache hit" in caplog.text
    assert again.words == vectors.words
    np.testing.assert_allclose(again.matrix, vectors.matrix)
    other = train_part([corpus], **{**settings, "window": 3})  # other settings: other key
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    assert other.dim == 8
    held = train_part([corpus, lines], held_out=HeldOut.of([Document("0", TEXTS[0])]), **settings)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 3  # held-out docs: other key
    assert held.words != vectors.words


def test_train_words_source_and_empty_sources(tmp_path):
    words = [["el", "médico", "trabaja"], ["la", "médica", "trabaja"]] * 5
    vectors = train_part(["@train"], train_words=words, dim=4, min_count=1, epochs=1,
                         cache_dir=tmp_path)
    assert set(vectors.words) == {"el", "médico", "trabaja", "la", "médica"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(VectorsError, match="no text"):
        train_part([tmp_path / "empty"], dim=4, cache_dir=tmp_path)
    with pytest.raises(VectorsError, match="nowhere"):
        train_part([tmp_path / "nowhere"], dim=4, cache_dir=tmp_path)
    with pytest.raises(VectorsError, match="unknown vectors algorithm 'glove'"):
        train_part(["@train"], train_words=words, algorithm="glove", cache_dir=tmp_path)


def test_sources_leave_held_out_documents_out(corpus):
    held = HeldOut.of([Document("1", TEXTS[1]), Document("2", "no such text")])
    words = corpus_words([corpus], lowercase=True)
    kept = corpus_words([corpus], lowercase=True, held_out=held)
    assert "atiende" in words and "atiende" not in kept  # TEXTS[1] only, in every copy
    # by file name too: 2.txt is held out by id although its text differs from "no such text"
    only_2 = corpus_words([corpus / "2.txt"], lowercase=True, held_out=held)
    assert only_2 == corpus_words([corpus / "2.txt"], lowercase=True)  # a file source: text only
    folder_2 = [w for w in corpus_words([corpus], lowercase=True, held_out=HeldOut(
        frozenset(["x"]), frozenset([str(i) for i in range(1, 20)])))]
    assert folder_2 == corpus_words([corpus / "0.txt"], lowercase=True)


def test_fasttext_gives_every_word_a_vector_as_gensim_does(tmp_path, corpus):
    from gensim.models import FastText

    part = train_part([corpus], algorithm="fasttext", dim=8, window=2, min_count=1, epochs=2,
                      bucket=2000, cache_dir=tmp_path)
    assert isinstance(part, FastTextPart) and part.extends
    unseen = part.unknown_vectors(["enfermeraza", "xq"])
    assert np.abs(unseen).sum(axis=1).min() > 0 and not np.allclose(unseen[0], unseen[1])
    # the n-gram mean is gensim's own out-of-vocabulary vector
    model = FastText([t.lower().split() for t in TEXTS], vector_size=8, min_count=1, bucket=2000,
                     epochs=1, seed=3, workers=1)
    mine = FastTextPart(WordVectors(list(model.wv.index_to_key), model.wv.vectors),
                        model.wv.vectors_ngrams, model.wv.min_n, model.wv.max_n)
    for word in ("enfermeraza", "policías", "médico"):
        expected = model.wv.get_vector(word) if word not in model.wv.key_to_index else model.wv[word]
        np.testing.assert_allclose(mine.vectors([word])[0], expected, rtol=1e-5, atol=1e-6)
    restored = FastTextPart.restore(*mine.state())
    np.testing.assert_allclose(restored.unknown_vectors(["enfermeraza"]),
                               mine.unknown_vectors(["enfermeraza"]), atol=1e-3)  # float16 n-grams


def test_rnn_backbone_starts_from_the_vectors_and_freezes_them(tmp_path):
    kv = small_kv()
    kv.save_word2vec_format(str(tmp_path / "w.vec"), binary=False)
    block = {"name": "rnn", "words": {"lowercase": True, "trainable": False,
                                      "vectors": {"path": str(tmp_path / "w.vec")}},
             "chars": None, "encoder": {"hidden": 4}}
    backbone = backbones.build(block, context=BackboneContext(train_words=[["Médico", "hoy"]]))
    emb = backbone.word_embedding.weight
    assert emb.shape[1] == 4 and backbone.recorded_config()["words"]["dim"] == 4  # recorded
    assert "dim" not in block["words"]  # for the saved config, not written into this one
    assert not emb.requires_grad and backbone.word_delta is None
    for word, row in (("médico", 0), ("😷", 2)):  # a vectors-only word joins the vocab
        np.testing.assert_array_equal(emb[backbone.words.id(word)].numpy(), kv.vectors[row])
    assert isinstance(load_vectors(tmp_path / "w.vec"), WordVectors)


def test_concat_puts_parts_side_by_side_over_the_union_of_words():
    first = WordVectors(["médico", "enfermera"], np.array([[1, -1], [-1, 1]], np.float32))
    second = WordVectors(["enfermera", "policía"], np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], np.float32))
    space = concat([StaticPart(first), StaticPart(second)])
    joined = space.vectors(space.words)
    assert space.words == ["médico", "enfermera", "policía"] and space.dim == 5 and not space.extends
    np.testing.assert_array_equal(joined[0], [1, -1, 0, 0, 0])  # médico: no second part
    np.testing.assert_array_equal(joined[2, :2], [0, 0])
    tail = joined[1:, 2:]  # the second part, rescaled to the first's spread
    np.testing.assert_allclose(tail / tail[0, 0], second.matrix / second.matrix[0, 0], rtol=1e-6)
    assert np.isclose(tail.std(), first.matrix.std())
    np.testing.assert_array_equal(space.unknown_vectors(["médico"]), np.zeros((1, 5)))


def test_e5_and_concat_blocks_from_config(corpus, tmp_path):
    space = space_from_config(
        {"concat": [{"train": {"sources": [str(corpus)], "dim": 8, "min_count": 1, "epochs": 1},
                     "cache_dir": str(corpus.parent / "cache")},
                    {"e5": {"sources": [str(corpus)]}}], "pca": 6}, lowercase=True)
    assert space.dim == 6 and "enfermera" in space.words and "Enfermera" not in space.words
    assert space.extends  # e5 gives any word a vector
    unseen = space.unknown_vectors(["enfermerísima", "zzkq"])
    assert not np.allclose(unseen[0], unseen[1]) and not np.allclose(unseen[0], space.null_vector())
    # an unknown word's vector keeps e5's part; a known word's also has its gensim part
    known = space.vectors(["enfermera"])[0]
    assert not np.allclose(known, space.unknown_vectors(["enfermera"])[0])
    files = space.save(tmp_path / "space")
    restored = VectorSpace.load(tmp_path / "space")
    assert sorted(files) == ["space.json", "space.safetensors"]
    np.testing.assert_allclose(restored.unknown_vectors(["enfermerísima", "zzkq"]), unseen, atol=1e-5)
    named = space_from_config({"concat": {"e5": {"e5": {"sources": [str(corpus)]}}, "off": None}},
                              lowercase=True)
    assert named.dim == 384 and set(named.words) <= set(space.words)
    with pytest.raises(VectorsError, match="'concat' needs a list or mapping"):
        space_from_config({"concat": []}, lowercase=True)
    with pytest.raises(VectorsError, match="e5 vectors need 'sources'"):
        space_from_config({"e5": {}}, lowercase=True)


def test_pca_keeps_the_main_directions_and_names_a_bad_size():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 6)) * 10
    vectors = WordVectors([f"w{i}" for i in range(200)], (signal + rng.normal(size=(200, 6)) * 0.01).astype(np.float32))
    space = concat([StaticPart(vectors)])
    reduced = space.fit_pca(2)
    assert reduced.dim == 2 and reduced.words == vectors.words
    # Two components hold all but the noise: pairwise distances survive.
    matrix = reduced.vectors(vectors.words)
    original = np.linalg.norm(vectors.matrix[:50, None] - vectors.matrix[None, :50], axis=-1)
    kept = np.linalg.norm(matrix[:50, None] - matrix[None, :50], axis=-1)
    np.testing.assert_allclose(kept, original, atol=0.1)
    np.testing.assert_allclose(reduced.mean, vectors.matrix.mean(axis=0), rtol=1e-5)
    with pytest.raises(VectorsError, match="pca: 7 must be in 1..6"):
        space.fit_pca(7)


def _build_and_tell(sources: list[str], cache_dir: str, started: str) -> bool:
    """(In a spawned process) train_part; True when this process trained, False on a hit."""
    import logging as log_module

    records: list[str] = []
    handler = log_module.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = log_module.getLogger("profner_models.vectors")
    logger.addHandler(handler)
    logger.setLevel(log_module.INFO)
    Path(started).touch()
    train_part([Path(s) for s in sources], dim=8, window=2, min_count=1, epochs=2,
               cache_dir=cache_dir)
    return any(message.startswith("word vectors: trained") for message in records)


def test_trials_that_start_together_train_the_vectors_once(tmp_path, corpus):
    """A sweep's trials start at once and ask for the same vectors: one trains them, the
    others wait on the cache entry's lock and read what it wrote."""
    import multiprocessing

    from profner_models.vectors.gensim import building

    train_part([corpus], dim=8, window=2, min_count=1, epochs=2, cache_dir=tmp_path / "probe")
    (name,) = [p.name for p in (tmp_path / "probe").glob("*.safetensors")]
    cache = tmp_path / "cache"
    flags = [tmp_path / f"started-{i}" for i in range(2)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        with building(cache / name):  # both workers reach the entry while it is being built
            pending = [pool.apply_async(_build_and_tell, ([str(corpus)], str(cache), str(f)))
                       for f in flags]
            deadline = time.monotonic() + 60
            while not all(f.exists() for f in flags) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
        trained = sorted(p.get(timeout=120) for p in pending)
    assert trained == [False, True]
    assert [p.name for p in cache.glob("*.safetensors")] == [name]
