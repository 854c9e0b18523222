"""Gazetteer: multi-word, longest-first matching over tokens; term files; the bundled list."""

from __future__ import annotations

import pytest

from profner_models.text.gazetteer import (
    BEGIN,
    INSIDE,
    OUT,
    Gazetteer,
    GazetteerError,
    gazetteer_from_config,
)
from profner_models.text.tokenize import tokenize


def words(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


def test_multi_word_terms_longest_match_first_case_and_accents_folded():
    gaz = Gazetteer(["médico", "médico de familia", "Guardia Civil", "coronel de la Guardia Civil"])
    text = "El MEDICO de familia y el coronel de la guardia civil, y un medico."
    flags = gaz.flags(words(text))
    tagged = [(w, f) for w, f in zip(words(text), flags) if f != OUT]
    assert tagged == [
        ("MEDICO", BEGIN), ("de", INSIDE), ("familia", INSIDE),
        ("coronel", BEGIN), ("de", INSIDE), ("la", INSIDE), ("guardia", INSIDE), ("civil", INSIDE),
        ("medico", BEGIN),
    ]


def test_adjacent_terms_each_start_with_begin_and_partial_terms_do_not_match():
    gaz = Gazetteer(["enfermera", "auxiliar de enfermería"])
    assert gaz.flags(["enfermera", "enfermera"]) == [BEGIN, BEGIN]
    assert gaz.flags(["auxiliar", "de", "cocina"]) == [OUT, OUT, OUT]
    assert gaz.flags([]) == []


def test_profner_tsv_uses_the_term_column_and_plain_lists_work(tmp_path):
    tsv = tmp_path / "g.tsv"
    tsv.write_text("Policías Locales\tpolicía local\nbombero\tbombero\n", encoding="utf-8")
    gaz = Gazetteer.load(tsv)
    assert gaz.terms == ["Policías Locales", "bombero"]
    assert gaz.flags(["policías", "locales"]) == [BEGIN, INSIDE]
    assert gaz.flags(["policía", "local"]) == [OUT, OUT]  # the lemma column is not used
    plain = tmp_path / "terms.txt"
    plain.write_text("camarero\n\nrepartidor de comida\n", encoding="utf-8")
    assert Gazetteer.load(plain).flags(words("un repartidor de comida")) == [OUT, BEGIN, INSIDE, INSIDE]


def test_save_load_roundtrip_and_overlong_terms_skipped(tmp_path):
    long_definition = " ".join(["palabra"] * 20)
    gaz = Gazetteer(["médico", "médico", "jefe de servicio", long_definition])
    assert gaz.terms == ["médico", "jefe de servicio"]
    gaz.save(tmp_path / "gazetteer.txt")
    again = Gazetteer.load(tmp_path)
    assert again.terms == gaz.terms
    assert again.flags(["jefe", "de", "servicio"]) == [BEGIN, INSIDE, INSIDE]


def test_missing_file_and_config_values(tmp_path):
    with pytest.raises(GazetteerError, match="nope.tsv"):
        Gazetteer.load(tmp_path / "nope.tsv")
    assert gazetteer_from_config(None) is None
    bundled = gazetteer_from_config("bundled")
    assert len(bundled) > 100
    assert any(f != OUT for f in bundled.flags(words("Los médicos y las enfermeras trabajan")))
