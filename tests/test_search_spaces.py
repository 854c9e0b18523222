"""Search-space loader: shipped files, hyperopt conversion, branches, and bad files."""

from __future__ import annotations

import math
from pathlib import Path

import hyperopt
import pytest
import yaml
from hyperopt import fmin, tpe
from ray.tune.utils import flatten_dict

from profner_models.config import deep_merge
from search_spaces import SearchSpaceError, load, shipped_spaces
from search_spaces.loader import config_key, parse

SHIPPED = ["rnn_narrow", "rnn_wide", "smoke", "transformer", "meddoprof",
           "meddoprof_transformer"]


def write(tmp_path: Path, text: str, name: str = "rnn_wide.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
study: t
base: smoke_rnn
space:
  training:
    lr: {dist: loguniform, low: 1.0e-3, high: 1.0e-1}
"""


def test_shipped_spaces_load_and_sample_into_the_base_config_shape() -> None:
    assert set(SHIPPED) <= set(shipped_spaces())
    for name in SHIPPED:
        space = load(name)
        base = space.base_config()
        for seed in range(5):
            sampled = space.sample(seed)
            full = space.trial_config(sampled)
            # Every sampled key lands in a section of the model config, merged over the base.
            assert set(full) >= set(base)
            for key, value in flatten_dict(sampled, delimiter=".").items():
                node = full
                for part in key.split("."):
                    node = node[part]
                assert node == value


def test_transformer_space_is_the_papers_table_2() -> None:
    space = load("transformer")
    dists = {d.path: d for d in space.distributions()}
    assert dists["training.lr"].kind == "loguniform"
    assert (dists["training.lr"].args["low"], dists["training.lr"].args["high"]) == (5e-6, 1e-4)
    assert dists["training.weight_decay"].args == {"low": 1e-3, "high": 1e-1}
    assert dists["training.warmup_steps"].kind == "randint"
    assert dists["training.warmup_steps"].args == {"low": 0, "high": 200}
    assert dists["training.batch_size"].args["options"] == [8, 16]
    assert dists["training.epochs"].args["options"] == [3, 4, 5]
    for seed in range(20):
        t = space.sample(seed)["training"]
        assert 5e-6 <= t["lr"] <= 1e-4 and 1e-3 <= t["weight_decay"] <= 1e-1
        assert isinstance(t["warmup_steps"], int) and 0 <= t["warmup_steps"] < 200
        assert t["batch_size"] in (8, 16) and t["epochs"] in (3, 4, 5)


def test_branches_give_branch_specific_keys_with_distinct_labels() -> None:
    space = load("rnn_wide")
    labels = [d.path for d in space.distributions()]
    assert len(labels) == len(set(labels))
    assert "model.backbone.encoder.cell=gru/hidden" in labels
    assert "model.backbone.encoder.cell=lstm/hidden" in labels
    seen = {}
    for seed in range(40):
        enc = space.sample(seed)["model"]["backbone"]["encoder"]
        seen.setdefault(enc["cell"], set()).add(enc["hidden"])
        vec = space.sample(seed)["model"]["backbone"]["words"]["vectors"]["concat"]["gensim"]["train"]
        assert vec["algorithm"] in ("skipgram", "cbow", "fasttext")
        assert (2 if vec["algorithm"] == "cbow" else 3) <= vec["window"]
        assert ("min_n" in vec) == (vec["algorithm"] == "fasttext")  # branch-specific key
    assert set(seen) == {"gru", "lstm"}
    assert max(seen["lstm"]) <= 384 and max(seen["gru"]) <= 512
    assert all(h % 32 == 0 and isinstance(h, int) for hs in seen.values() for h in hs)


def test_hyperopt_tpe_runs_on_the_space_without_duplicate_labels() -> None:
    """fmin walks the whole space (branches included): DuplicateLabel would raise here."""
    space = load("rnn_wide").to_hyperopt()
    seen = []

    def objective(config: dict) -> float:
        seen.append(config)
        return -config["training"]["lr"]

    trials = hyperopt.Trials()
    fmin(objective, space, algo=tpe.suggest, max_evals=12, trials=trials,
         rstate=__import__("numpy").random.default_rng(0), show_progressbar=False)
    assert len(seen) == 12 and all("hidden" in c["model"]["backbone"]["encoder"] for c in seen)


def test_quantised_and_int_distributions(tmp_path: Path) -> None:
    path = write(tmp_path, """
study: q
base: smoke_rnn
space:
  training:
    batch_size: {dist: qrandint, low: 8, high: 32, q: 8}
    warmup_steps: {dist: randint, low: 0, high: 3}
    weight_decay: {dist: quniform, low: 0.0, high: 0.1, q: 0.05}
    lr: {dist: qloguniform, low: 0.001, high: 0.1, q: 0.001}
    epochs: 2
""")
    space = load(path)
    for seed in range(30):
        t = space.sample(seed)["training"]
        assert t["batch_size"] in (8, 16, 24, 32) and type(t["batch_size"]) is int
        assert t["warmup_steps"] in (0, 1, 2)
        assert t["weight_decay"] in (0.0, 0.05, 0.1)
        assert math.isclose(round(t["lr"] / 0.001) * 0.001, t["lr"])
        assert t["epochs"] == 2


@pytest.mark.parametrize("body, message", [
    ("model: {backbone: {hidden: {dist: logunifrom, low: 1, high: 2}}}",
     "rnn_wide.yaml: model.backbone.hidden: unknown distribution 'logunifrom'"),
    ("training: {lr: {dist: loguniform, low: 0, high: 1}}",
     "rnn_wide.yaml: training.lr.low: must be > 0 for loguniform"),
    ("training: {lr: {dist: uniform, low: 2, high: 1}}",
     "rnn_wide.yaml: training.lr: low must be below high"),
    ("training: {lr: {dist: uniform, low: 1}}",
     "rnn_wide.yaml: training.lr: uniform needs 'high'"),
    ("training: {lr: {dist: uniform, low: 1, high: 2, q: 1}}",
     "rnn_wide.yaml: training.lr: uniform takes low, high, not 'q'"),
    ("training: {batch_size: {dist: choice, options: []}}",
     "rnn_wide.yaml: training.batch_size.options: must be a non-empty list"),
    ("training: {warmup_steps: {dist: randint, low: 0.5, high: 3}}",
     "rnn_wide.yaml: training.warmup_steps: randint bounds must be integers"),
    ("training: {lr: {dist: uniform, low: a, high: 2}}",
     "rnn_wide.yaml: training.lr.low: must be a number"),
    ("model: {backbone: {encoder: {cell: {dist: branch, options: {gru: 3}}}}}",
     "rnn_wide.yaml: model.backbone.encoder.cell.options.gru: must be a mapping"),
    ("model: {backbone: {encoder: {cell: {dist: branch, options: {gru: {hidden: {dist: nope}}}}}}}",
     "rnn_wide.yaml: model.backbone.encoder.cell=gru.hidden: unknown distribution 'nope'"),
    ("modle: {backbone: {}}", "rnn_wide.yaml: space.modle: not a config section"),
])
def test_bad_files_name_the_key_path(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, f"study: w\nbase: smoke_rnn\nspace:\n  {body}\n")
    with pytest.raises(SearchSpaceError) as error:
        load(path)
    assert message in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("study: w\nspace: {training: {lr: 1}}\n", "rnn_wide.yaml: base: missing"),
    ("study: w\nbase: no_such_config\nspace: {training: {lr: 1}}\n",
     "rnn_wide.yaml: base: cannot read base config 'no_such_config'"),
    ("study: w\nbase: smoke_rnn\nspace: {training: {lr: 1}}\nmode: maximise\n",
     "rnn_wide.yaml: mode: must be 'min' or 'max'"),
    ("study: w\nbase: smoke_rnn\nspce: {}\n", "rnn_wide.yaml: spce: unknown top-level key"),
    ("study: w\nbase: smoke_rnn\nspace: [1, 2]\n", "rnn_wide.yaml: space: must be a non-empty mapping"),
    ("study: [unclosed\n", "rnn_wide.yaml: not valid YAML"),
])
def test_bad_top_level(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SearchSpaceError) as error:
        load(write(tmp_path, text))
    assert message in str(error.value)


def test_missing_file_lists_shipped_spaces() -> None:
    with pytest.raises(SearchSpaceError, match="smoke"):
        load("no_such_space")


def test_base_config_relative_to_the_space_file(tmp_path: Path) -> None:
    from profner_models.config import load_config

    base = load_config("smoke_rnn")
    base["training"]["lr"] = 1
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(base))
    path = write(tmp_path, "study: r\nbase: mine.yaml\nspace: {training: {epochs: {dist: choice, options: [1, 2]}}}\n")
    space = load(path)
    full = space.trial_config(space.sample(0))
    assert full["training"]["lr"] == 1 and full["training"]["epochs"] in (1, 2)


def test_a_study_that_samples_a_key_the_model_ignores_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "study: r\nbase: smoke_rnn\n"
                           "space: {training: {epoch: {dist: choice, options: [1, 2]}}}\n")
    with pytest.raises(SearchSpaceError, match=r"training\.epoch: unknown key \(did you mean 'epochs'\?\)"):
        load(path)
    path = write(tmp_path, "study: r\nbase: smoke_rnn\nspace: {model: {backbone: {encoder: "
                           "{cell: {dist: choice, options: [gru, grux]}}}}}\n")
    with pytest.raises(SearchSpaceError, match=r"model\.backbone\.encoder\.cell: .*'grux'"):
        load(path)


def test_helpers() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert flatten_dict({"a": {"b": 1}, "c": [1]}, delimiter=".") == {"a.b": 1, "c": [1]}
    assert config_key("model.backbone.encoder.cell=gru/hidden") == "model.backbone.encoder.hidden"
    assert config_key("training.lr") == "training.lr"
    with pytest.raises(SearchSpaceError, match="x.yaml: the file must be a mapping"):
        parse([1], Path("x.yaml"))


def test_narrowing_keeps_winning_choices_and_shrinks_ranges(tmp_path: Path) -> None:
    """Stage 2 of the NAS (trainables.narrow) on synthetic top trials of rnn_wide."""
    from search_spaces import save
    from trainables.narrow import narrow_space, top_trials

    wide = load("rnn_wide")
    configs = [wide.sample(seed) for seed in range(40)]
    gru = [c for c in configs if c["model"]["backbone"]["encoder"]["cell"] == "gru"]
    scored = [(c, c["training"]["lr"] if c in gru else 0.0) for c in configs]
    top = top_trials(scored, "max", 0.25)
    assert len(top) == 10 and all(c in gru for c in top)
    narrowed = narrow_space(wide, top, "run123")
    encoder = narrowed.spec["model"]["backbone"]["encoder"]
    # Only GRU won: the branch becomes a constant and its sub-space is narrowed in place.
    assert encoder["cell"] == "gru" and encoder["hidden"]["dist"] == "qloguniform"
    hiddens = [c["model"]["backbone"]["encoder"]["hidden"] for c in top]
    assert encoder["hidden"]["low"] <= min(hiddens) and max(hiddens) <= encoder["hidden"]["high"]
    lr = narrowed.spec["training"]["lr"]
    lrs = [c["training"]["lr"] for c in top]
    assert 1e-4 <= lr["low"] <= min(lrs) and max(lrs) <= lr["high"] <= 1e-2
    assert lr["high"] / lr["low"] < 1e-2 / 1e-4  # narrower than the wide range
    batch = narrowed.spec["training"]["batch_size"]
    kept = sorted({c["training"]["batch_size"] for c in top})
    assert (batch["options"] if isinstance(batch, dict) else [batch]) == kept
    # The narrowed file loads back and samples inside the winners.
    path = save(narrowed, tmp_path / "rnn_narrowed.yaml")
    again = load(path)
    assert again.narrowed_from == "run123" and again.study == "rnn_wide_narrow"
    for seed in range(10):
        sample = again.sample(seed)
        assert sample["model"]["backbone"]["encoder"]["cell"] == "gru"
        assert lr["low"] <= sample["training"]["lr"] <= lr["high"]
