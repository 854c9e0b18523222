"""Predictor and the train/predict CLI on the bundled sample."""

from __future__ import annotations

import io

import pytest
from rnn_support import sample_data, trained

from profner_models.cli.main import main
from profner_models.corpus import read_7a_tsv, read_7b_tsv
from profner_models.predict import Prediction, Predictor, predict_corpus
from profner_models.progress import Progress

EMOJI = "😷👩🏽‍⚕️ "


@pytest.fixture(scope="module")
def predictor():
    return Predictor(trained().model, batch_size=8)


def test_predictions_have_the_contract_shape_and_offsets_into_the_text(predictor):
    texts = [doc.text for doc in sample_data()[1]]
    texts += [EMOJI + text for text in texts[:20]] + ["", "   \n", "😷"]
    predictions = predictor.predict(texts)
    assert len(predictions) == len(texts)
    found = 0
    for text, prediction in zip(texts, predictions):
        out = prediction.to_dict()
        assert set(out) == {"label", "probability", "entities"}
        assert out["label"] in (0, 1) and 0.0 <= out["probability"] <= 1.0
        for entity in out["entities"]:
            found += 1
            assert set(entity) == {"start", "end", "type", "text"}
            assert text[entity["start"]:entity["end"]] == entity["text"]
            assert entity["type"] in ("PROFESION", "SITUACION_LABORAL")
        if out["entities"]:
            assert out["label"] == 1  # label_from_entities in the smoke config
    assert found > 0, "the smoke model should find some entities on the sample"
    assert predictions[-3].entities == [] and predictions[-2].entities == []


def test_batched_equals_one_at_a_time(predictor):
    texts = [doc.text for doc in sample_data()[1][:12]]
    batched = predictor.predict(texts)
    single = [predictor.predict([text])[0] for text in texts]
    assert [p.label for p in batched] == [p.label for p in single]
    assert [p.entities for p in batched] == [p.entities for p in single]
    for a, b in zip(batched, single):
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
    with pytest.raises(TypeError):
        predictor.predict("one string")
    assert isinstance(batched[0], Prediction)


def test_a_corpus_predicted_batch_by_batch_gets_the_same_predictions(predictor):
    texts = [doc.text for doc in sample_data()[1][:20]]  # 3 batches of 8
    whole, by_batch = predictor.predict(texts), predict_corpus(predictor, texts, progress=False)
    assert [(p.label, p.entities) for p in by_batch] == [(p.label, p.entities) for p in whole]


def test_progress_lines_in_a_log_name_their_loop_and_show_a_loss_only_when_there_is_one():
    log = io.StringIO()
    assert list(Progress(3, every_s=0, stream=log).steps(["a", "b", "c"], "predicting")) == ["a", "b", "c"]
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("predicting step 1/3 ") and "ETA" in lines[0]
    assert not any("loss" in line for line in lines)
    log = io.StringIO()
    shown = Progress(2, every_s=0, stream=log)
    for _ in shown.steps(range(2), "epoch 1/4"):
        shown.set_loss(0.5)
    assert log.getvalue().splitlines()[0].startswith("epoch 1/4 step 1/2 loss 0.500 ")


def test_cli_train_then_predict_writes_official_tsvs(tmp_path):
    from profner_models.sample import PROFNER_SAMPLE

    model_dir = tmp_path / "model"
    assert main(["train", "smoke_rnn", "--out", str(model_dir), "--no-progress",
                 "--set", "training.epochs=1", "--set", "training.max_steps=3"]) == 0
    assert (model_dir / "meta.json").is_file()
    valid = PROFNER_SAMPLE / "subtask-2" / "brat" / "valid"
    out_7a, out_7b = tmp_path / "out" / "7a.tsv", tmp_path / "out" / "7b.tsv"
    assert main(["predict", "--model", str(model_dir), "--input", str(valid),
                 "--out-7a", str(out_7a), "--out-7b", str(out_7b)]) == 0
    labels = read_7a_tsv(out_7a)
    assert set(labels) == {p.stem for p in valid.glob("*.txt")}
    spans = read_7b_tsv(out_7b)
    for tweet_id, entities in spans.items():
        text = (valid / f"{tweet_id}.txt").read_text(encoding="utf-8")
        assert all(text[s.start:s.end] == s.text for s in entities)


def test_cli_reports_bad_inputs(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "none"), "--input", str(tmp_path),
                 "--out-7a", str(tmp_path / "a.tsv")]) == 1
    assert "none" in capsys.readouterr().err
    assert main(["train", "no_such_config", "--out", str(tmp_path / "m")]) == 1
    assert "no_such_config" in capsys.readouterr().err
