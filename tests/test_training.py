"""fit / load_task_data on the bundled sample: loss falls, seeded runs repeat, callbacks, splits."""

from __future__ import annotations

import shutil

import pytest
import torch
from rnn_support import sample_data, smoke_config, trained

from profner_models.config import ConfigError
from profner_models.training import EpochEnd, fit, load_task_data

METRIC_KEYS = {"f1_7a", "precision_7a", "recall_7a", "f1_7b", "precision_7b", "recall_7b",
               "f1_mean", "loss"}


def test_fit_learns_on_the_sample():
    result = trained()
    history = result.history
    # measured on the sample (seed 13, 4 epochs, ~2 s): 7b 0.62, 7a 0.94 at the best epoch
    assert result.best_metrics["f1_7b"] >= 0.55 and result.best_metrics["f1_7a"] >= 0.85
    assert len(history) == 4
    assert METRIC_KEYS <= set(history[0])
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert min(h["loss"] for h in history[1:]) < history[0]["loss"]
    assert {"epoch": result.best_epoch, **result.best_metrics} == history[result.best_epoch - 1]
    assert result.best_metrics["f1_7b"] == max(h["f1_7b"] for h in history)
    assert history[0]["dev_docs"] == len(sample_data()[1])
    assert result.model.metrics == result.best_metrics
    assert not result.model.network.training


def test_same_config_and_seed_give_the_same_metrics():
    train, dev = sample_data()
    config = smoke_config(epochs=1, max_steps=6)
    first = fit(config, list(train), list(dev), progress=False)
    second = fit(config, list(train), list(dev), progress=False)
    assert first.history[0]["loss"] == second.history[0]["loss"]
    assert [h["f1_7b"] for h in first.history] == [h["f1_7b"] for h in second.history]
    third = fit(smoke_config(epochs=1, max_steps=6, seed=99), list(train), list(dev), progress=False)
    assert third.history[0]["loss"] != first.history[0]["loss"]


def test_callbacks_get_each_epoch_and_can_stop_training():
    train, dev = sample_data()
    seen: list[EpochEnd] = []

    def stop_after_first(event: EpochEnd) -> bool:
        seen.append(event)
        return True

    result = fit(smoke_config(epochs=3, max_steps=4), list(train), list(dev),
                 callbacks=[stop_after_first], progress=False)
    assert [e.epoch for e in seen] == [1] and len(result.history) == 1
    assert METRIC_KEYS <= set(seen[0].metrics)
    assert seen[0].model is result.model


def test_dev_is_the_valid_split_or_a_seeded_fraction_of_train(tmp_path):
    from profner_models.sample import PROFNER_SAMPLE

    train, dev = sample_data()
    assert {d.id for d in train}.isdisjoint({d.id for d in dev})
    assert len(dev) == len(list((PROFNER_SAMPLE / "subtask-2/brat/valid").glob("*.txt")))
    root = tmp_path / "profner"
    shutil.copytree(PROFNER_SAMPLE, root, ignore=shutil.ignore_patterns("valid*"))
    config = smoke_config()
    config["data"].update(dev_fraction=0.25, dev_seed=7)
    part_train, part_dev = load_task_data(config, root)
    assert len(part_dev) == round(0.25 * (len(part_train) + len(part_dev)))
    assert {d.id for d in part_train}.isdisjoint({d.id for d in part_dev})
    assert load_task_data(config, root)[1] == part_dev
    config["data"]["dev_seed"] = 8
    assert load_task_data(config, root)[1] != part_dev


def test_extra_training_corpora_add_their_sentences_to_train_never_to_dev():
    """``data.extra_train``: MEDDOPROF's sentences with a PROFESION / SITUACION_LABORAL mention
    join the training documents (ACTIVIDAD dropped, offsets into the sentence); dev is the
    same split as without them."""
    from profner_models.sample import MEDDOPROF_SAMPLE
    from profner_models.training.data import extra_documents

    config = smoke_config()
    plain_train, plain_dev = load_task_data(config, None)
    config["data"]["extra_train"] = [{"corpus": str(MEDDOPROF_SAMPLE)}]
    train, dev = load_task_data(config, None)
    extra = train[len(plain_train):]
    assert train[:len(plain_train)] == plain_train and dev == plain_dev and len(extra) > 20
    assert all(d.id.startswith("extra:") and "\n" not in d.text and d.label == 1 for d in extra)
    spans = [(d.text, s) for d in extra for s in d.spans]
    assert {s.type for _, s in spans} == {"PROFESION", "SITUACION_LABORAL"}
    assert all(text[s.start:s.end] == s.text for text, s in spans)
    block = {"corpus": str(MEDDOPROF_SAMPLE), "split": "train", "unit": "sentence", "keep": "all"}
    every = extra_documents(block, ["PROFESION"])
    assert len(every) > len(extra) and {d.label for d in every} == {0, 1}
    documents = extra_documents({**block, "unit": "document"}, ["PROFESION"])
    assert len(documents) == len(list((MEDDOPROF_SAMPLE / "meddoprof-training-set" / "task1")
                                      .glob("*.txt")))
    config["data"]["extra_train"] = [{"corpus": str(MEDDOPROF_SAMPLE), "unit": "paragraph"}]
    with pytest.raises(ConfigError, match="extra_train"):
        load_task_data(config, None)


def test_unknown_selection_metric_is_named():
    train, dev = sample_data()
    with pytest.raises(KeyError, match="f1_nope"):
        fit(smoke_config(epochs=1, max_steps=1, select="f1_nope"), list(train), list(dev), progress=False)


def test_unknown_task_is_named_with_the_registered_ones():
    train, dev = sample_data()
    config = {**smoke_config(epochs=1, max_steps=1), "task": "profnr"}
    for call in (lambda: load_task_data(config),
                 lambda: fit(config, list(train), list(dev), progress=False)):
        with pytest.raises(ValueError, match=r"task: unknown task 'profnr' \(did you mean 'profner'\? "
                                             r"registered: meddoprof, profner\)"):
            call()


def test_refit_trains_on_train_plus_dev_and_keeps_the_last_epoch():
    config = smoke_config(epochs=2, select="last")
    config["data"]["train_on_dev"] = True
    train, dev = load_task_data(config, None)
    plain_train, plain_dev = sample_data()
    assert len(train) == len(plain_train) + len(plain_dev) and list(dev) == list(plain_dev)
    result = fit(config, train, dev, progress=False)
    assert result.best_epoch == len(result.history) == 2
    assert result.history[0]["train_docs"] == len(train)


def trainable_weights(network) -> dict:
    return {k: v.detach().clone() for k, v in network.named_parameters() if v.requires_grad}


def test_average_last_keeps_the_mean_of_the_last_epochs_weights():
    train, dev = sample_data()
    after: dict[int, dict] = {}
    fit(smoke_config(epochs=4, select="last"), list(train), list(dev), progress=False,
        callbacks=[lambda end: after.update({end.epoch: trainable_weights(end.model.network)})])
    averaged = fit(smoke_config(epochs=4, select="last", average_last=3), list(train), list(dev),
                   progress=False)
    kept = trainable_weights(averaged.model.network)
    assert kept.keys() == after[4].keys()
    for name, weight in kept.items():
        torch.testing.assert_close(weight, (after[2][name] + after[3][name] + after[4][name]) / 3)
    assert any(not torch.equal(kept[name], after[4][name]) for name in kept)
    # dev scores the averaged weights: the kept epoch's row is theirs, not the last epoch's
    assert averaged.best_epoch == 4 and averaged.best_metrics == averaged.model.metrics


def test_average_last_needs_select_last():
    train, dev = sample_data()
    with pytest.raises(ConfigError, match=r"training.average_last: .* training.select: last \(got 'f1_7b'\)"):
        fit(smoke_config(epochs=2, select="f1_7b", average_last=2), list(train), list(dev), progress=False)


def test_interleave_positive_trains_odd_epochs_on_tweets_with_an_entity():
    train, dev = sample_data()
    positives = sum(1 for doc in train if any(s.type in ("PROFESION", "SITUACION_LABORAL")
                                              for s in doc.spans))
    assert 0 < positives < len(train)
    result = fit(smoke_config(epochs=3, interleave_positive=True), list(train), list(dev),
                 progress=False)
    assert [h["train_docs"] for h in result.history] == [positives, len(train), positives]
    plain = fit(smoke_config(epochs=1), list(train), list(dev), progress=False)
    assert plain.history[0]["train_docs"] == len(train)


def test_train_output_to_a_log_stays_a_few_lines(tmp_path):
    """Not a terminal: epoch lines and periodic progress lines, never one per bar refresh."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "profner_models.cli.main", "train", "smoke_rnn",
                           "--out", str(tmp_path / "m"), "--set", "training.epochs=3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert len(log.encode()) < 4096, log
    assert sum(line.startswith("epoch ") for line in done.stderr.splitlines()) == 3
    assert "dev: 100 documents held out from every learned resource" in done.stderr
