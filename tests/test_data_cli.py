"""``profner data stats`` on small corpora built here and on the real ProfNER train split."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from profner_models import artifacts
from profner_models.cli.main import main
from profner_models.corpus import write_brat
from profner_models.documents import Document, Span

needs_tags = pytest.mark.skipif(
    importlib.util.find_spec("profner_models.text.tags") is None,
    reason="profner_models.text.tags (alignment_report) not written yet",
)


def _brat_folder(folder: Path) -> Path:
    write_brat(Document("a", "El médico jefe de guardia", [Span(3, 9, "PROFESION"), Span(3, 14, "PROFESION"),
                                                          Span(3, 14, "PROFESION")]), folder)
    write_brat(Document("b", "Está en paro", [Span(5, 12, "SITUACION_LABORAL")]), folder)
    write_brat(Document("c", "Nada", []), folder)
    return folder


@needs_tags
def test_stats_json_on_a_brat_folder(tmp_path, capsys):
    folder = _brat_folder(tmp_path / "brat")
    assert main(["data", "stats", str(folder), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 3 and stats["spans"] == 4
    assert stats["spans_by_type"] == {"PROFESION": 3, "SITUACION_LABORAL": 1}
    assert (stats["duplicates"], stats["nested_pairs"], stats["overlapping_pairs"]) == (1, 1, 0)
    assert stats["labels"] == {"None": 3}
    assert 0.0 <= stats["alignment_exact_rate"] <= 1.0


@needs_tags
def test_stats_table_and_lenient(tmp_path, capsys):
    folder = _brat_folder(tmp_path / "brat")
    (folder / "b.ann").write_text("T1\tSITUACION_LABORAL 5 99\ten paro\n", encoding="utf-8")
    assert main(["data", "stats", str(folder), "--lenient"]) == 0
    captured = capsys.readouterr()
    assert "documents" in captured.out and "offset_out_of_range" in captured.out
    assert "b.ann:1" in captured.err


def test_stats_names_unknown_entity_types(tmp_path, capsys):
    from test_corpus import TWEETS, make_profner

    root = make_profner(tmp_path / "profner", {**TWEETS, "9": ("Es fontanero", [("PROFESIONN", 3, 12)], 1)})
    assert main(["data", "stats", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unknown_labels"] == {"type:PROFESIONN": 1}
    assert "'PROFESIONN'" in captured.err


def test_stats_strict_error_names_file_and_line(tmp_path, capsys):
    folder = _brat_folder(tmp_path / "brat")
    (folder / "b.ann").write_text("T1\tSITUACION_LABORAL 5\ten paro\n", encoding="utf-8")
    assert main(["data", "stats", str(folder)]) == 1
    assert "b.ann:1" in capsys.readouterr().err


@needs_tags
@pytest.mark.realdata
def test_stats_on_real_profner(real_data_dir, capsys):
    assert main(["data", "stats", str(real_data_dir / "profner"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 6000 and stats["labels"] == {"0": 4607, "1": 1393}
    assert stats["spans_by_type"]["PROFESION"] == 1597
    assert stats["alignment_exact_rate"] > 0.95


def test_stats_against_a_model_say_how_new_the_words_are(tmp_path, capsys):
    from rnn_support import trained

    model = trained().model
    artifacts.save(model, tmp_path / "model")
    folder = _brat_folder(tmp_path / "brat")
    write_brat(Document("d", "El zorglub florbea", []), folder)
    assert main(["data", "stats", str(folder), "--json", "--model", str(tmp_path / "model")]) == 0
    stats = json.loads(capsys.readouterr().out)
    # the words of the four documents; which of them the smoke model lacks is its backbone's say
    words = ["El", "médico", "jefe", "de", "guardia", "Está", "en", "paro", "Nada",
             "El", "zorglub", "florbea"]
    unknown = model.network.backbone.word_status(words).count(0)
    assert stats["model"] == str(tmp_path / "model")
    assert stats["unknown_word_rate"] == pytest.approx(unknown / len(words))
    assert 2 <= unknown < len(words)
    assert main(["data", "stats", str(folder), "--model", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
