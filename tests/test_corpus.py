"""Corpus layer: real ProfNER/MEDDOPROF counts, byte-exact round trips, broken input, span policy."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest

from profner_models.corpus import (
    SCORED_TYPES,
    CorpusError,
    CorpusReport,
    detect_layout,
    load_corpus,
    read_7b_tsv,
    read_norm_tsv,
    read_valid_codes,
    write_7a_tsv,
    write_7b_tsv,
    write_brat,
    write_norm_tsv,
)
from profner_models.documents import Document, Span
from profner_models.spans import apply_span_policy, overlap_counts

# ---------------------------------------------------------------- real corpora (session scope)


@pytest.fixture(scope="module")
def profner(real_data_dir: Path) -> tuple[list[Document], CorpusReport]:
    return load_corpus(real_data_dir / "profner")


@pytest.fixture(scope="module")
def meddoprof(real_data_dir: Path) -> tuple[list[Document], CorpusReport]:
    return load_corpus(real_data_dir / "meddoprof")


@pytest.mark.realdata
def test_profner_train_counts(profner):
    docs, report = profner
    assert report.layout == "profner" and report.ok and not report.skipped
    assert len(docs) == 6000 and len({d.id for d in docs}) == 6000
    assert Counter(d.label for d in docs) == {1: 1393, 0: 4607}
    spans = [s for d in docs for s in d.spans]
    assert len(spans) == 1922 == report.spans
    assert Counter(s.type for s in spans) == {"PROFESION": 1597, "SITUACION_LABORAL": 264,
                                              "ACTIVIDAD": 45, "FIGURATIVA": 16}
    assert all(d.label == int(bool(d.spans)) for d in docs)  # README: label 1 iff any entity
    assert all(s.text == d.text[s.start:s.end] for d in docs for s in d.spans)
    assert report.notes["empty_tsv_rows"] == 4607
    # README's "5 pairs" are 4 nested pairs plus the exact duplicate in 1257951081012899840.
    assert overlap_counts(docs) == {"duplicates": 1, "nested_pairs": 4, "overlapping_pairs": 0}
    lehendakari = next(d for d in docs if d.id == "1257951081012899840")
    assert Counter(s.key for s in lehendakari.spans).most_common(1)[0][1] == 2


@pytest.mark.realdata
def test_profner_span_policy_on_real_data(profner):
    docs, _ = profner
    before = copy.deepcopy(docs)
    policed, counts = apply_span_policy(docs, types=SCORED_TYPES)
    assert docs == before  # input untouched
    assert counts == {"filtered_by_type": 61, "duplicates": 1, "nested_dropped": 4, "overlapping_dropped": 0}
    assert sum(len(d.spans) for d in policed) == 1922 - 61 - 1 - 4
    assert overlap_counts(policed) == {"duplicates": 0, "nested_pairs": 0, "overlapping_pairs": 0}
    coronel = next(d for d in policed if d.id == "1264885356626948097")
    assert "coronel de la Guardia Civil" in [s.text for s in coronel.spans]
    assert "Guardia Civil" not in [s.text for s in coronel.spans]


@pytest.mark.realdata
def test_profner_tsv_round_trip_is_byte_identical(profner, real_data_dir, tmp_path):
    docs, _ = profner
    gold_7a = real_data_dir / "profner/subtask-1/train.tsv"
    write_7a_tsv(docs, tmp_path / "7a.tsv")
    assert (tmp_path / "7a.tsv").read_bytes() == gold_7a.read_bytes()
    gold_7b = real_data_dir / "profner/subtask-2/tsv/train.tsv"
    order = list(read_7b_tsv(gold_7b))  # only normalisation: the gold file's document order
    by_id = {d.id: d for d in docs}
    write_7b_tsv([by_id[i] for i in order], tmp_path / "7b.tsv")
    assert (tmp_path / "7b.tsv").read_bytes() == gold_7b.read_bytes()


def _renumbered(ann: bytes) -> bytes:
    lines = ann.decode("utf-8").splitlines(keepends=True)
    return "".join(f"T{i}\t{line.split(chr(9), 1)[1]}" for i, line in enumerate(lines, 1)).encode()


@pytest.mark.realdata
def test_profner_brat_round_trip_is_byte_identical(profner, real_data_dir, tmp_path):
    docs, _ = profner
    gold = real_data_dir / "profner/subtask-2/brat/train"
    renumbered = 0
    for doc in docs:
        ann = write_brat(doc, tmp_path, field="type")
        assert (tmp_path / f"{doc.id}.txt").read_bytes() == (gold / f"{doc.id}.txt").read_bytes()
        gold_ann = (gold / f"{doc.id}.ann").read_bytes()
        if ann.read_bytes() != gold_ann:  # only normalisation: T-ids renumbered 1..n
            assert ann.read_bytes() == _renumbered(gold_ann), doc.id
            renumbered += 1
    assert renumbered == 1  # 1251576152335855621.ann numbers T1, T4, T5


@pytest.mark.realdata
def test_meddoprof_counts(meddoprof, real_data_dir):
    docs, report = meddoprof
    assert report.layout == "meddoprof" and report.ok and not report.skipped
    assert len(docs) == 1176 and sum(1 for d in docs if d.spans) == 952
    spans = [s for d in docs for s in d.spans]
    assert len(spans) == 2778
    assert Counter(s.type for s in spans) == {"PROFESION": 1906, "SITUACION_LABORAL": 770, "ACTIVIDAD": 102}
    assert Counter(s.cls for s in spans) == {"PACIENTE": 1351, "SANITARIO": 924, "OTROS": 335, "FAMILIAR": 168}
    assert all(s.code for s in spans)
    assert sum(s.code.startswith("SCTID: ") for s in spans) == 887
    codes = read_valid_codes(real_data_dir / "meddoprof/meddoprof_valid_codes.tsv")
    assert len(codes) == 3558
    used = {s.code for s in spans}
    assert len(used) == 262 and used <= codes.keys()
    assert codes["SCTID: 105557001"][0] == "ladrón"
    # BOM files: offsets count the BOM as character 0 and still match the mention text.
    bom_docs = [d for d in docs if d.text.startswith("\ufeff")]
    assert len(bom_docs) == 9 and all(s.text == d.text[s.start:s.end] for d in bom_docs for s in d.spans)
    assert overlap_counts(docs) == {"duplicates": 0, "nested_pairs": 23, "overlapping_pairs": 3}


@pytest.mark.realdata
def test_meddoprof_round_trips(meddoprof, real_data_dir, tmp_path):
    docs, _ = meddoprof
    root = real_data_dir / "meddoprof/meddoprof-training-set"
    picked = [d for d in docs if d.text.startswith("\ufeff")][:3] + [d for d in docs if len(d.spans) > 5][:5]
    for doc in picked:
        for field, task in (("type", "task1"), ("cls", "task2")):
            ann = write_brat(doc, tmp_path / task, field=field)
            gold = (root / task / f"{doc.id}.ann").read_bytes()
            assert ann.read_bytes() in (gold, _renumbered(gold)), doc.id
            assert (tmp_path / task / f"{doc.id}.txt").read_bytes() == (root / task / f"{doc.id}.txt").read_bytes()
    write_norm_tsv(docs, tmp_path / "norm.tsv")
    ours = (tmp_path / "norm.tsv").read_bytes().decode().splitlines()
    gold = (root / "meddoprof-norm-train.tsv").read_bytes().decode().splitlines()
    assert ours[0] == gold[0]
    assert sorted(ours[1:]) == sorted(gold[1:])  # only normalisation: gold row order
    assert len(read_norm_tsv(tmp_path / "norm.tsv")) == 2778


# ---------------------------------------------------------------- small corpora built here

TWEETS = {
    "101": ("Los médicos y enfermeras 😷 trabajan sin descanso", [("PROFESION", 4, 11), ("PROFESION", 14, 24)], 1),
    "102": ("Hoy llueve en Madrid", [], 0),
    "103": ("Mi hermano está en paro", [("SITUACION_LABORAL", 16, 23)], 1),
}


def make_profner(root: Path, tweets: dict = TWEETS) -> Path:
    brat = root / "subtask-2/brat/train"
    brat.mkdir(parents=True)
    (root / "subtask-2/tsv").mkdir(parents=True)
    (root / "subtask-1").mkdir()
    rows_7a, rows_7b, empty = ["tweet_id\tlabel"], ["tweet_id\tbegin\tend\ttype\textraction"], []
    for tid, (text, spans, label) in tweets.items():
        (brat / f"{tid}.txt").write_text(text, encoding="utf-8")
        ann = "".join(f"T{i}\t{t} {s} {e}\t{text[s:e]}\n" for i, (t, s, e) in enumerate(spans, 1))
        (brat / f"{tid}.ann").write_text(ann, encoding="utf-8")
        rows_7a.append(f"{tid}\t{label}")
        rows_7b += [f"{tid}\t{s}\t{e}\t{t}\t{text[s:e]}" for t, s, e in spans]
        empty += [] if spans else [f"{tid}\t-\t-\t-\t-"]
    (root / "subtask-1/train.tsv").write_text("\n".join(rows_7a) + "\n", encoding="utf-8")
    (root / "subtask-2/tsv/train.tsv").write_text("\n".join(rows_7b + empty) + "\n", encoding="utf-8")
    return root


def test_small_profner_reads_and_round_trips(tmp_path):
    root = make_profner(tmp_path / "profner")
    docs, report = load_corpus(root)
    assert report.ok and [d.id for d in docs] == ["101", "102", "103"]
    assert [d.label for d in docs] == [1, 0, 1]
    assert [s.text for s in docs[0].spans] == ["médicos", "enfermeras"]
    write_7b_tsv(docs, tmp_path / "7b.tsv")
    write_7a_tsv(docs, tmp_path / "7a.tsv")
    assert (tmp_path / "7b.tsv").read_bytes() == (root / "subtask-2/tsv/train.tsv").read_bytes()
    assert (tmp_path / "7a.tsv").read_bytes() == (root / "subtask-1/train.tsv").read_bytes()


def test_a_misspelled_entity_type_is_reported_not_dropped_silently(tmp_path, caplog):
    tweets = {**TWEETS, "104": ("Soy profesora", [("PROFESSION", 4, 13)], 1)}
    root = make_profner(tmp_path / "profner", tweets)
    with caplog.at_level("WARNING", logger="profner_models.corpus.load"):
        docs, report = load_corpus(root)
    assert report.unknown_labels == {"type:PROFESSION": 1}
    assert any("'PROFESSION'" in r.getMessage() and "document 104" in r.getMessage()
               for r in caplog.records)
    assert len(docs) == 4  # reported, still read: the user decides
    clean, clean_report = load_corpus(make_profner(tmp_path / "clean"))
    assert not clean_report.unknown_labels and not caplog.records[1:]


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


BRAT = "subtask-2/brat/train"
# name -> (corruption, problem kind, file named in the message, line, what lenient mode skips)
CORRUPTIONS = {
    "ann_syntax": (lambda r: _replace(r / BRAT / "101.ann", "T2\tPROFESION 14 24", "T2\tPROFESION 14"),
                   "ann_syntax", "101.ann", 2, {"spans": 1}),
    "offset": (lambda r: _replace(r / BRAT / "103.ann", "16 23", "16 99"),
               "offset_out_of_range", "103.ann", 1, {"spans": 1}),
    "ann_text": (lambda r: _replace(r / BRAT / "103.ann", "\ten paro", "\ten pa"),
                 "extraction_mismatch", "103.ann", 1, {"spans": 1}),
    "tsv_text": (lambda r: _replace(r / "subtask-2/tsv/train.tsv", "\tenfermeras", "\tenfermera"),
                 "extraction_mismatch", "train.tsv", 3, {"rows": 1}),
    "txt_only": (lambda r: (r / BRAT / "102.ann").unlink(), "missing_ann", "102.txt", None, {"documents": 1}),
    "ann_only": (lambda r: (r / BRAT / "104.ann").write_text("", encoding="utf-8"),
                 "missing_txt", "104.ann", None, {"documents": 1}),
    "header": (lambda r: _replace(r / "subtask-1/train.tsv", "tweet_id\tlabel", "id\tlabel"),
               "tsv_header", "train.tsv", 1, {"files": 1}),
    "not_utf8": (lambda r: (r / BRAT / "102.txt").write_bytes(b"Hoy\nllueve en Madrid \xe9"),
                 "encoding", "102.txt", 2, {"documents": 1}),
    "duplicate": (lambda r: _replace(r / "subtask-1/train.tsv", "103\t1\n", "103\t1\n103\t1\n"),
                  "duplicate_id", "train.tsv", 5, {"rows": 1}),
    "brat_vs_tsv": (lambda r: _replace(r / "subtask-2/tsv/train.tsv", "103\t16\t23\tSITUACION_LABORAL",
                                       "103\t16\t23\tPROFESION"),
                    "source_mismatch", "train.tsv", 4, {"rows": 1}),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_bad_input_strict_names_file_and_line(tmp_path, name):
    corrupt, kind, filename, line, _ = CORRUPTIONS[name]
    root = make_profner(tmp_path / "profner")
    corrupt(root)
    with pytest.raises(CorpusError) as caught:
        load_corpus(root)
    error = caught.value
    assert error.kind == kind and error.path.name == filename and error.line == line
    assert f"{filename}:{line}" in str(error) if line else filename in str(error)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_bad_input_lenient_counts_and_skips_only_the_bad_item(tmp_path, name):
    corrupt, kind, filename, line, skipped = CORRUPTIONS[name]
    root = make_profner(tmp_path / "profner")
    corrupt(root)
    docs, report = load_corpus(root, lenient=True)
    assert report.warnings[kind] >= 1 and any(filename in m and kind in m for m in report.messages)
    assert all(report.skipped[what] >= n for what, n in skipped.items())
    kept = {d.id: d for d in docs}
    if kind not in ("missing_ann", "encoding"):
        assert {"101", "102", "103"} <= kept.keys()
    else:
        assert set(kept) == {"101", "103"}
    # the spans not touched by the corruption are all there
    assert [s.text for s in kept["101"].spans][:1] == ["médicos"]


def make_meddoprof(root: Path) -> Path:
    """Two cases; the second is named differently in task1 than in task2/NORM; one has a BOM."""
    base = root / "meddoprof-training-set"
    text_a = "\ufeffPaciente de 40 años, albañil en paro."
    text_b = "Trabaja como enfermera. Su madre es maestra."
    files = {
        ("task1", "caso1"): (text_a, [("PROFESION", 22, 29), ("SITUACION_LABORAL", 30, 37)]),
        ("task2", "caso1"): (text_a, [("PACIENTE", 22, 29), ("PACIENTE", 30, 37)]),
        ("task1", "zzzz2"): (text_b, [("PROFESION", 13, 22), ("PROFESION", 36, 43)]),
        ("task2", "caso_psiquiatria2"): (text_b, [("PACIENTE", 13, 22), ("FAMILIAR", 36, 43)]),
    }
    for (task, name), (text, spans) in files.items():
        (base / task).mkdir(parents=True, exist_ok=True)
        (base / task / f"{name}.txt").write_text(text, encoding="utf-8")
        ann = "".join(f"T{i}\t{t} {s} {e}\t{text[s:e]}\n" for i, (t, s, e) in enumerate(spans, 1))
        (base / task / f"{name}.ann").write_text(ann, encoding="utf-8")
    norm = ['"filename"\t"text"\t"span"\t"code"',
            '"caso_psiquiatria2"\t"maestra"\t"36 43"\t"2341.1"',
            '"caso1"\t"albañil"\t"22 29"\t"7112.1"',
            '"caso1"\t"en paro"\t"30 37"\t"SCTID: 73438004"',
            '"caso_psiquiatria2"\t"enfermera"\t"13 22"\t"2221.1"']
    (base / "meddoprof-norm-train.tsv").write_text("\n".join(norm) + "\n", encoding="utf-8")
    return root


def test_small_meddoprof_name_quirk_bom_and_codes(tmp_path):
    root = make_meddoprof(tmp_path / "meddoprof")
    docs, report = load_corpus(root)
    assert report.ok and report.notes["docs_matched_by_text"] == 1
    assert report.aliases == {"caso_psiquiatria2": "zzzz2"}
    by_id = {d.id: d for d in docs}
    assert [(s.text, s.cls, s.code) for s in by_id["caso1"].spans] == [
        ("albañil", "PACIENTE", "7112.1"), ("en paro", "PACIENTE", "SCTID: 73438004")]
    assert [(s.cls, s.code) for s in by_id["zzzz2"].spans] == [("PACIENTE", "2221.1"), ("FAMILIAR", "2341.1")]
    assert by_id["caso1"].text[0] == "\ufeff"
    # the set folder itself is a layout too
    assert detect_layout(root / "meddoprof-training-set") == "meddoprof_set"


def test_meddoprof_norm_problems(tmp_path):
    root = make_meddoprof(tmp_path / "meddoprof")
    norm = root / "meddoprof-training-set/meddoprof-norm-train.tsv"
    _replace(norm, '"caso1"\t"en paro"\t"30 37"', '"caso1"\t"en paro"\t"31 38"')
    with pytest.raises(CorpusError, match=r"meddoprof-norm-train.tsv:4"):
        load_corpus(root)
    docs, report = load_corpus(root, lenient=True)
    assert report.warnings == {"extraction_mismatch": 1, "missing_code": 1}
    assert report.skipped == {"rows": 1}
    caso1 = next(d for d in docs if d.id == "caso1")
    assert [s.code for s in caso1.spans] == ["7112.1", None]


def test_meddoprof_task2_mismatch_and_quoted_tsv(tmp_path):
    root = make_meddoprof(tmp_path / "meddoprof")
    _replace(root / "meddoprof-training-set/task2/caso1.ann", "PACIENTE 30 37", "PACIENTE 29 37")
    with pytest.raises(CorpusError, match=r"caso1.ann:2") as caught:
        load_corpus(root)
    assert caught.value.kind in ("extraction_mismatch", "source_mismatch")
    codes = tmp_path / "codes.tsv"
    codes.write_text('"code"\t"label"\t"alternative_label"\n"1.1"\t"a ""b"""\t\n"1.1"\t"c"\t"d|a ""b"""\n',
                     encoding="utf-8")
    assert read_valid_codes(codes) == {"1.1": ('a "b"', "c", "d")}


def test_brat_and_text_folders(tmp_path):
    doc = Document("d1", "Soy médico\ny enfermero", [Span(4, 10, "PROFESION"), Span(4, 22, "PROFESION")])
    write_brat(doc, tmp_path / "brat")
    ann = (tmp_path / "brat/d1.ann").read_text(encoding="utf-8")
    assert ann == "T1\tPROFESION 4 10\tmédico\nT2\tPROFESION 4 22\tmédico y enfermero\n"
    docs, report = load_corpus(tmp_path / "brat")
    assert report.layout == "brat" and docs[0].spans[1].text == "médico\ny enfermero"
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt/a.txt").write_text("uno", encoding="utf-8")
    docs, report = load_corpus(tmp_path / "txt")
    assert report.layout == "text" and docs == [Document("a", "uno", [])]
    with pytest.raises(ValueError, match="no cls"):
        write_brat(doc, tmp_path / "x", field="cls")
    with pytest.raises(CorpusError, match="brat folder not found"):
        load_corpus(make_profner(tmp_path / "profner"), split="valid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="layout"):
        load_corpus(tmp_path / "empty")


def test_span_policy_rules():
    text = "el jefe de cocina y camarero"
    spans = [Span(3, 7, "PROFESION"), Span(3, 17, "PROFESION"), Span(3, 17, "PROFESION"),
             Span(11, 28, "ACTIVIDAD"), Span(20, 28, "PROFESION"), Span(0, 2, "FIGURATIVA")]
    doc = Document("x", text, list(spans), 1)
    out, counts = apply_span_policy([doc], types=["PROFESION", "ACTIVIDAD"])
    assert doc.spans == spans  # not mutated
    assert counts == {"filtered_by_type": 1, "duplicates": 1, "nested_dropped": 1, "overlapping_dropped": 1}
    # ACTIVIDAD 11-28 (17 chars) is longest and kept; 3-17 crosses it; 3-7 and 20-28... 3-7 is free
    assert [(s.start, s.end) for s in out[0].spans] == [(3, 7), (11, 28)]
    # ties on length: the earliest span wins
    tie = Document("t", "abcdef", [Span(2, 5, "A"), Span(1, 4, "B")])
    assert apply_span_policy([tie])[0][0].spans == [Span(1, 4, "B")]
    kept, counts = apply_span_policy([doc], overlap="keep_all")
    assert len(kept[0].spans) == 5 and counts["duplicates"] == 1
    with pytest.raises(ValueError):
        apply_span_policy([doc], overlap="merge")


@pytest.mark.parametrize(("layout", "split"), [("profner", "train"), ("profner", "valid"), ("meddoprof", "train")])
def test_bundled_sample_reads_strictly(layout, split):
    from profner_models.sample import SAMPLE_DIR

    root = Path(SAMPLE_DIR) / layout
    assert root.is_dir(), f"the bundled sample lost its {layout}/ folder"
    docs, report = load_corpus(root, split=split)
    assert report.ok and report.layout == layout and docs and report.spans > 0
