"""New text: held-out dev documents feed nothing the model learns from, unknown words get a
trained or computed representation, and a refit comes with its check on unseen text."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from rnn_support import sample_data, smoke_config, trained

from profner_models import artifacts
from profner_models.corpus import load_corpus
from profner_models.models import SEEN, UNKNOWN
from profner_models.norm.meddoprof import build_norm
from profner_models.predict import Predictor
from profner_models.refit_check import (
    check,
    paired_bootstrap,
    unknown_entity_share,
    worse_than_noise,
)
from profner_models.sample import PROFNER_SAMPLE
from profner_models.tasks import validate
from profner_models.text.tokenize import tokenize
from profner_models.training import build_model, fit, held_out_of, load_task_data
from profner_models.unseen import train

BRAT = PROFNER_SAMPLE / "subtask-2" / "brat"  # both splits: a source that holds the dev files


def lowered_words(docs) -> set[str]:
    return {t.text.lower() for doc in docs for t in tokenize(doc.text)}


def vectors_config(vectors: dict, **words) -> dict:
    config = validate(smoke_config())
    config["model"]["backbone"]["words"].update(vectors=vectors, tuning="delta", **words)
    return config


def test_a_sample_model_tags_no_unknown_words_but_still_finds_a_known_profession():
    model = trained().model
    predictor = Predictor(model)
    status = model.network.backbone.word_status
    made_up = "Ayer vi al zorglub brumoso con la trepidancia de siempre y el florbo"
    with_job = made_up.replace("zorglub", "enfermero")
    words = [t.text for t in tokenize(made_up)]
    assert status(words).count(UNKNOWN) >= 4  # zorglub, brumoso, trepidancia, florbo
    assert status(["enfermero"]) == [SEEN]
    unknown_only, known = predictor.predict([made_up, with_job])
    assert unknown_only.entities == []
    assert [(e.text, e.type) for e in known.entities] == [("enfermero", "PROFESION")]


def test_held_out_dev_feeds_no_vocabulary_vector_source_or_pca(tmp_path):
    block = {"concat": {"gensim": {"train": {"sources": [str(BRAT)], "dim": 8, "min_count": 1,
                                             "epochs": 1}, "cache_dir": str(tmp_path)},
                        "e5": {"e5": {"sources": [str(BRAT)]}}},
             "pca": 16}
    config = vectors_config(block)
    train_docs, dev = load_task_data(config, None)
    dev_only = lowered_words(dev) - lowered_words(train_docs)
    assert len(dev_only) > 50
    model, _, _ = build_model(config, train_docs, held_out_of(train_docs, dev))
    backbone = model.network.backbone
    space = backbone.space
    assert dev_only.isdisjoint(backbone.words.items)
    for part in space.parts:
        assert part.words and dev_only.isdisjoint(part.words), part.kind
    # the PCA was fitted on the space's own words, which hold no dev-only word
    np.testing.assert_allclose(space.mean, np.concatenate(
        [p.vectors(space.words) * s for p, s in zip(space.parts, space.scales)], axis=1).mean(0),
        rtol=1e-4, atol=1e-5)
    # the same source without a held-out split does take the dev words
    everything, _, _ = build_model(config, [*train_docs, *dev], held_out_of([*train_docs, *dev], dev))
    assert len(dev_only & set(everything.network.backbone.words.items)) > 0.9 * len(dev_only)


def test_the_norm_index_is_fitted_without_dev_mentions():
    config = validate(smoke_config())
    config.update(task="meddoprof")
    from profner_models.config import load_config

    config = validate(load_config("smoke_meddoprof"))
    train_docs, dev = load_task_data(config, None)
    index = build_norm(config, train_docs)
    dev_only = ({s.text for d in dev for s in d.spans}
                - {s.text for d in train_docs for s in d.spans})
    assert dev_only and dev_only.isdisjoint(
        t for t, k in zip(index.row_texts, index.row_kinds) if k == "mention")
    assert dev_only.isdisjoint(index.mention_keys)


@pytest.mark.parametrize("vectors", [
    {"e5": {"sources": [str(BRAT / "train")]}},
    {"train": {"sources": ["@train"], "algorithm": "fasttext", "dim": 16, "min_count": 1,
               "epochs": 2, "bucket": 5000}},
], ids=["e5", "fasttext"])
def test_unseen_words_get_computed_vectors_and_prediction_uses_them(vectors, tmp_path):
    config = vectors_config({**vectors, "pca": 12} if "e5" in vectors else
                            {**vectors, "cache_dir": str(tmp_path)}, dropout=0.1,
                            dropout_to="pretrained")
    config["training"].update(epochs=1)
    train_docs, dev = sample_data()
    result = fit(config, list(train_docs), list(dev), progress=False)
    backbone = result.model.network.backbone
    assert backbone.extends and backbone.word_delta is not None
    first, second = "el brumoseador", "el trepidancista"
    assert backbone.word_status(["brumoseador", "trepidancista"]) == [UNKNOWN, UNKNOWN]
    docs = [[t.text for t in tokenize(first)], [t.text for t in tokenize(second)]]
    flags = [result.model.gazetteer.flags(doc) for doc in docs]
    features = backbone.featurize(docs, flags)
    unknown = features["unknown_vectors"]
    assert unknown.shape == (2, backbone.word_embedding.embedding_dim)
    assert not torch.allclose(unknown[0], unknown[1])
    with torch.inference_mode():
        words = backbone(features).words
        gathered = backbone._embed_words(features["word_ids"], unknown)  # NumPy's gathers
    assert not torch.allclose(words[0, 1], words[1, 1])  # the unknown word's own state differs
    # out of autograd the rows and sums come from NumPy: the same as the ops' to the bit
    backbone.eval()
    assert backbone.word_delta.weight.abs().sum() > 0
    assert torch.equal(gathered, backbone._embed_words(features["word_ids"], unknown).detach())
    # and the saved model computes the same vectors after a reload
    artifacts.save(result.model, tmp_path / "m")
    from profner_models.artifacts import load

    reloaded = load(tmp_path / "m").network.backbone
    again = reloaded.featurize(docs, flags)
    torch.testing.assert_close(again["unknown_vectors"], unknown, atol=2e-3, rtol=1e-3)


def test_word_dropout_trains_the_unknown_row():
    """Without word dropout ``<unk>`` never occurs in training: its row only decays (weight
    decay), keeping its random direction; with it, the row is learned."""
    from profner_models.training import seed_everything

    train_docs, dev = sample_data()
    cosines = {}
    for rate in (0.0, 0.2):
        config = validate(smoke_config(epochs=2))
        config["model"]["backbone"]["words"]["dropout"] = rate
        seed_everything(13)  # fit seeds the same way before it builds the model
        before = build_model(copy.deepcopy(config), list(train_docs))[0].network.backbone
        after = fit(config, list(train_docs), list(dev), progress=False).model.network.backbone
        start, end = before.word_embedding.weight[1], after.word_embedding.weight[1]
        cosines[rate] = float(torch.nn.functional.cosine_similarity(start.detach(), end.detach(), dim=0))
    assert cosines[0.0] > 0.99999 and cosines[0.2] < 0.999, cosines


def test_fit_reports_how_new_the_dev_text_is():
    history = trained().history
    rate = history[0]["dev_unknown_rate"]
    train_docs, dev = sample_data()
    dev_words = [t.text.lower() for d in dev for t in tokenize(d.text)]
    known = lowered_words(train_docs)
    assert rate == pytest.approx(sum(w not in known for w in dev_words) / len(dev_words), abs=0.01)
    assert 0.05 < rate < 0.5 and history[0]["dev_unseen_rate"] >= rate


def train_split_only(tmp_path):
    """A copy of the ProfNER sample without its valid split (dev: a seeded fraction)."""
    import shutil

    root = tmp_path / "profner"
    shutil.copytree(PROFNER_SAMPLE, root)
    shutil.rmtree(root / "subtask-2" / "brat" / "valid")
    for tsv in ("subtask-1/valid.tsv", "subtask-2/tsv/valid.tsv"):
        (root / tsv).unlink()
    return root


def test_a_refit_comes_with_its_held_out_estimate_and_check(tmp_path):
    config = smoke_config(epochs=6, select="last")  # 4: some seeds' refits learn nothing yet
    # trained on the sample's train split; checked on the whole sample, of which only the valid
    # split was never trained on
    config["data"].update(train_on_dev=True, check=str(PROFNER_SAMPLE))
    result = train(copy.deepcopy(config), train_split_only(tmp_path), progress=False, jobs=1)
    estimate, checked = result.unseen["estimate"], result.unseen["check"]
    assert estimate["epoch"] == 6 and estimate["dev_docs"] == 60 and estimate["train_docs"] == 240
    assert estimate["metrics"]["f1_7b"] == result.holdout.history[-1]["f1_7b"]
    assert result.result.history[-1]["train_docs"] == 300  # the refit: train + dev
    # it keeps its last epoch: dev, which it learns from, is scored after that epoch only
    assert ["f1_7b" in row for row in result.result.history] == [False] * 5 + [True]
    assert checked["documents"] == len(load_corpus(PROFNER_SAMPLE, "valid")[0])
    assert {"refit", "holdout", "agreement", "passed"} <= set(checked)
    assert 0 <= checked["refit"]["unknown_entity_share"] <= 1
    assert checked["holdout"]["f1_7b"] > 0.2 and checked["agreement"] > 0.3


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_multi_seed_estimate_is_the_mean_of_its_held_out_runs(tmp_path, jobs):
    config = smoke_config(epochs=2, select="last")
    config["data"].update(train_on_dev=True, check=str(PROFNER_SAMPLE))
    config["training"]["estimate_seeds"] = 3
    result = train(copy.deepcopy(config), train_split_only(tmp_path), progress=False, jobs=jobs)
    estimate = result.unseen["estimate"]
    each = estimate["seeds"]["each"]
    assert len(each) == 3 and estimate["dev_docs"] == 60 and estimate["train_docs"] == 240
    assert each[0]["metrics"]["f1_7b"] == result.holdout.history[-1]["f1_7b"]  # the checked one
    assert [e["from"] for e in each[1:]] == ["held-out run, seed 14", "held-out run, seed 15"]
    f1 = [e["metrics"]["f1_mean"] for e in each]
    assert estimate["metrics"]["f1_mean"] == pytest.approx(np.mean(f1))
    assert estimate["seeds"]["std"]["f1_mean"] == pytest.approx(np.std(f1))
    assert len({round(v, 6) for v in f1}) > 1  # the seeds do differ


def test_unknown_entity_share_counts_entities_holding_an_unknown_word():
    model = trained().model
    texts = ["el zorglub trabaja", "el enfermero trabaja"]
    from profner_models.documents import Span
    from profner_models.predict import Prediction

    predictions = [Prediction(1, 0.9, [Span(3, 10, "PROFESION", "zorglub")]),
                   Prediction(1, 0.9, [Span(3, 12, "PROFESION", "enfermero")])]
    assert unknown_entity_share(model, texts, predictions) == 0.5
    assert check(model, model, [])["passed"]


def check_docs(count: int | None = None):
    docs = load_corpus(PROFNER_SAMPLE, "valid")[0][:count]
    from profner_models.spans import apply_span_policy

    return apply_span_policy(docs, types=["PROFESION", "SITUACION_LABORAL"], overlap="keep_all")[0]


def fires_on_unknown_words(model, texts):
    """A copy of ``model`` whose ``<unk>`` row was trained to make every word outside the
    vocabulary a profession: the refit failure of 2026-11 (434 of its 539 false positives on
    new tweets held an unknown word)."""
    from profner_models.models import collate, encode_text

    broken = copy.deepcopy(model)
    network, backbone = broken.network, broken.network.backbone
    profession = broken.labels["tag"].index("B-PROFESION")
    encoded = [encode_text(text, broken.gazetteer) for text in texts]
    for item in encoded:
        status = backbone.word_status(item.words)
        item.targets = {"classify": 1, "tag": [profession if s == UNKNOWN else 0 for s in status]}
    table = backbone.word_embedding.weight
    optimizer = torch.optim.Adam([table], lr=0.05)
    network.train()
    for _ in range(40):
        features, targets = collate(network, encoded)
        loss = network(features, targets)[1]["tag"].loss
        optimizer.zero_grad()
        loss.backward()
        keep = torch.zeros_like(table.grad)
        keep[1] = table.grad[1]  # the <unk> row only
        table.grad = keep
        optimizer.step()
    network.eval()
    return broken


def test_a_refit_broken_on_unknown_words_is_refused():
    good = trained(6).model
    docs = check_docs()
    broken = fires_on_unknown_words(good, [doc.text for doc in docs[50:]])
    result = check(broken, good, docs[:50])  # checked on other texts than it was broken on
    assert not result["passed"], result["verdict"]
    assert result["refit"]["unknown_entity_share"] > result["holdout"]["unknown_entity_share"]
    assert "worse" in result["verdict"] or "unknown words" in result["verdict"]


def test_two_equally_good_models_on_a_small_check_set_are_not_refused():
    """Two seeds of one recipe differ on 100 short documents by chance: the interval says so."""
    train, dev = sample_data()
    other_seed = fit(smoke_config(epochs=6, seed=15), list(train), list(dev), progress=False).model
    one, other = trained(6).model, other_seed
    result = check(one, other, check_docs())
    if result["difference"]["observed"] >= 0:  # the one that scores lower as the "refit"
        result = check(other, one, check_docs())
    d = result["difference"]
    assert result["passed"], result["verdict"]
    assert d["observed"] < 0 and d["low"] < 0 < d["high"] and 0 < d["share_not_worse"] < 1
    assert "90% interval" in result["verdict"] and "not shown worse" in result["verdict"]


def test_a_drop_past_the_old_fixed_margin_on_30_documents_is_not_proof():
    """Right on 14 of 30 documents against 16 (-0.067, beyond the 0.05 margin that refused the
    MEDDOPROF refit): the bootstrap interval holds 0, so no refusal; on 3,000 documents the same
    rates are proof."""
    def accuracy_gap(right_a: np.ndarray, right_b: np.ndarray):
        return lambda rows: float(right_a[rows].mean() - right_b[rows].mean())

    a, b = np.zeros(30, bool), np.zeros(30, bool)
    a[:14], b[2:18] = True, True
    small = paired_bootstrap(accuracy_gap(a, b), 30, seed=1)
    assert small["observed"] < -0.05 and small["low"] < 0 < small["high"]
    large = paired_bootstrap(accuracy_gap(np.tile(a, 100), np.tile(b, 100)), 3000, seed=1)
    assert large["high"] < 0


def test_a_refit_is_refused_for_a_drop_past_run_to_run_noise_not_for_any_sure_drop():
    """3,000 documents make a 0.03 drop certain, yet two runs of one recipe differ that much on
    a check set (MODEL_NOISE): no refusal. Right on 5 of 30 documents against 25: refused."""
    def accuracy_gap(right_a: np.ndarray, right_b: np.ndarray):
        return lambda rows: float(right_a[rows].mean() - right_b[rows].mean())

    refit, holdout = np.zeros(3000, bool), np.zeros(3000, bool)
    refit[:1800], holdout[:1890] = True, True
    sure = paired_bootstrap(accuracy_gap(refit, holdout), 3000, seed=1)
    assert sure["high"] < 0 and not worse_than_noise(sure)
    refit, holdout = np.zeros(30, bool), np.zeros(30, bool)
    refit[:5], holdout[:25] = True, True
    assert worse_than_noise(paired_bootstrap(accuracy_gap(refit, holdout), 30, seed=1))
