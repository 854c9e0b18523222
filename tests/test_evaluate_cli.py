"""``profner evaluate`` on small hand-made files and on the real gold files."""

from __future__ import annotations

import json

import pytest

from profner_models.cli.main import main


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["evaluate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


HEADER_7B = "tweet_id\tbegin\tend\ttype\textraction\n"


def test_7b_json(tmp_path, capsys):
    gold = _write(tmp_path / "gold.tsv", HEADER_7B + "1\t0\t7\tPROFESION\tmédico\n"
                  "1\t10\t17\tSITUACION_LABORAL\ten paro\n2\t-\t-\t-\t-\n3\t4\t9\tPROFESION\tjefa\n")
    pred = _write(tmp_path / "pred.tsv", HEADER_7B + "1\t0\t7\tPROFESION\tmédico\n"
                  "1\t0\t7\tPROFESION\tmédico\n1\t10\t17\tPROFESION\ten paro\n2\t0\t3\tACTIVIDAD\tcor\n"
                  "3\t4\t10\tPROFESION\tjefa \n")
    code, out, _ = _run(capsys, "--task", "7b", "--gold", str(gold), "--pred", str(pred), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["task"] == "7b"
    assert (result["tp"], result["fp"], result["fn"]) == (1, 2, 2)
    assert result["precision"] == pytest.approx(1 / 3) and result["f1"] == pytest.approx(1 / 3)
    assert result["per_type"]["SITUACION_LABORAL"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                       "tp": 0, "fp": 0, "fn": 1}


def test_7a_table_and_unknown_ids(tmp_path, capsys):
    gold = _write(tmp_path / "gold.tsv", "tweet_id\tlabel\n1\t1\n2\t0\n3\t1\n")
    pred = _write(tmp_path / "pred.tsv", "tweet_id\tlabel\n1\t1\n2\t1\n9\t1\n")
    code, out, err = _run(capsys, "--task", "7a", "--gold", str(gold), "--pred", str(pred))
    assert code == 0
    assert out.splitlines()[0] == "task 7a"
    assert "0.5000     0.5000  0.5000  1     1     1" in out
    assert "1 predicted ids are not in the gold file" in err


def test_meddoprof_brat_and_norm(tmp_path, capsys):
    text = "Trabaja como enfermera. Su padre, agricultor, está en paro.\n"
    for side, anns in (("gold", "T1\tPROFESION 13 22\tenfermera\nT2\tPROFESION 34 44\tagricultor\n"),
                       ("pred", "T1\tPROFESION 13 22\tenfermera\nT2\tSITUACION_LABORAL 34 44\tagricultor\n")):
        _write(tmp_path / side / "task1" / "c1.txt", text)
        _write(tmp_path / side / "task1" / "c1.ann", anns)
        _write(tmp_path / side / "task2" / "c1.txt", text)
        _write(tmp_path / side / "task2" / "c1.ann", "T1\tSANITARIO 13 22\tenfermera\nT2\tFAMILIAR 34 44\tagricultor\n")
    code, out, _ = _run(capsys, "--task", "meddoprof-ner", "--gold", str(tmp_path / "gold" / "task1"),
                        "--pred", str(tmp_path / "pred" / "task1"), "--json")
    assert code == 0 and json.loads(out)["f1"] == 0.5
    code, out, _ = _run(capsys, "--task", "meddoprof-class", "--gold", str(tmp_path / "gold" / "task2"),
                        "--pred", str(tmp_path / "pred" / "task2"), "--json")
    assert code == 0 and json.loads(out)["per_type"]["FAMILIAR"]["f1"] == 1.0
    header = '"filename"\t"text"\t"span"\t"code"\n'
    gold = _write(tmp_path / "gold.tsv", header + '"c1"\t"enfermera"\t"13 22"\t"2221.1"\n'
                  '"c1"\t"agricultor"\t"34 44"\t"6111.1"\n')
    # M5/M7 (meddoprof-evaluation-library src/main.py): predicted codes are stripped, then
    # codes not in the valid list are dropped (not false positives).
    pred = _write(tmp_path / "pred.tsv", header + '"c1"\t"enfermera"\t"13 22"\t" 2221.1 "\n'
                  '"c1"\t"agricultor"\t"34 44"\t"9999.9"\n')
    codes = _write(tmp_path / "codes.tsv", '"code"\t"label"\t"alternative_label"\n'
                   '"2221.1"\t"enfermera"\t""\n"6111.1"\t"agricultor"\t""\n')
    code, out, err = _run(capsys, "--task", "meddoprof-norm", "--gold", str(gold), "--pred", str(pred),
                          "--valid-codes", str(codes), "--json")
    result = json.loads(out)
    assert code == 0 and (result["precision"], result["recall"], result["invalid_codes"]) == (1.0, 0.5, 1)
    assert "1 predicted codes are not in the valid codes file" in err
    code, out, err = _run(capsys, "--task", "meddoprof-norm", "--gold", str(gold), "--pred", str(pred), "--json")
    assert code == 0 and json.loads(out)["fp"] == 1 and "no --valid-codes" in err


def test_meddoprof_brat_parsed_by_official_rules(tmp_path, capsys):
    # M7 (TeMU-BSC/meddoprof-evaluation-library src/ann_parsing.py): only .ann files are read
    # (no .txt needed); a file with a line of other than 3 tab fields (a blank line too) is
    # skipped whole; T-lines that are arguments of an R-line are dropped; labels outside the
    # NER set are not parsed. M4 (src/main.py): an empty gold .ann is a gold document.
    gold, pred = tmp_path / "gold", tmp_path / "pred"
    _write(gold / "a.ann", "T1\tPROFESION 0 5\tcura\nT2\tACTIVIDAD 10 15\tcorre\n")
    _write(gold / "b.ann", "T1\tSITUACION_LABORAL 3 8\tparado\n")
    _write(gold / "empty.ann", "")
    _write(pred / "a.ann", "T1\tPROFESION 0 5\tcura\nT2\tACTIVIDAD 10 15\tcorre\n"
                           "T3\tPROFESION 20 25\tx\nR1\tRel Arg1:T3 Arg2:T4\t\nT4\tFIGURATIVA 30 35\ty\n")
    _write(pred / "b.ann", "T1\tSITUACION_LABORAL 3 8\tparado\n\n")  # blank line: file skipped
    _write(pred / "empty.ann", "T1\tPROFESION 1 2\tz\n")
    _write(pred / "not_gold.ann", "T1\tPROFESION 1 2\tz\n")
    code, out, err = _run(capsys, "--task", "meddoprof-ner", "--gold", str(gold), "--pred", str(pred), "--json")
    result = json.loads(out)
    assert code == 0 and (result["tp"], result["fp"], result["fn"]) == (2, 1, 1)
    assert result["ignored_ids"] == 1 and result["skipped"] == [
        f"{pred / 'b.ann'}:2: not 'ID<TAB>LABEL start end<TAB>text' or discontinuous;"
        " the official scorer skips this whole file"]
    assert "skips this whole file" in err
    _write(pred / "b.ann", "T1\tSITUACION_LABORAL 3 5;6 8\tpa do\n")  # discontinuous: skipped
    _, out, _ = _run(capsys, "--task", "meddoprof-ner", "--gold", str(gold), "--pred", str(pred), "--json")
    assert json.loads(out)["fn"] == 1
    _write(pred / "b.ann", "T1\tSITUACION_LABORAL 3 x\tparado\n")
    code, _, err = _run(capsys, "--task", "meddoprof-ner", "--gold", str(gold), "--pred", str(pred))
    assert code == 1 and f"{pred / 'b.ann'}:1" in err


def test_bad_input_is_reported(tmp_path, capsys):
    gold = _write(tmp_path / "gold.tsv", "tweet_id\tlabel\n1\t1\n")
    bad = _write(tmp_path / "bad.tsv", "tweet_id\tlabel\n1\tyes\n")
    code, _, err = _run(capsys, "--task", "7a", "--gold", str(gold), "--pred", str(bad))
    assert code == 1 and "bad.tsv:2" in err
    code, _, err = _run(capsys, "--task", "7a", "--gold", str(gold), "--pred", str(tmp_path / "none.tsv"))
    assert code == 1 and "none.tsv" in err


@pytest.mark.realdata
def test_real_meddoprof_gold_against_itself(real_data_dir, capsys):
    root = real_data_dir / "meddoprof"
    train = root / "meddoprof-training-set"
    for task, folder, extra in (("meddoprof-ner", train / "task1", []), ("meddoprof-class", train / "task2", []),
                                ("meddoprof-norm", train / "meddoprof-norm-train.tsv",
                                 ["--valid-codes", str(root / "meddoprof_valid_codes.tsv")])):
        code, out, _ = _run(capsys, "--task", task, "--gold", str(folder), "--pred", str(folder), "--json", *extra)
        result = json.loads(out)
        # 2,778 mentions in every view, no duplicate keys, no skipped file, all codes valid
        assert code == 0 and (result["f1"], result["tp"], result["fp"]) == (1.0, 2778, 0), task
        assert result["skipped"] == [] and result["duplicate_predictions"] == 0


@pytest.mark.realdata
def test_real_gold_against_itself(real_data_dir, capsys):
    tsv = real_data_dir / "profner" / "subtask-2" / "tsv" / "train.tsv"
    code, out, _ = _run(capsys, "--task", "7b", "--gold", str(tsv), "--pred", str(tsv), "--json")
    result = json.loads(out)
    # 1,597 + 264 scored rows, one exact duplicate ("Lehendakari") counted once
    assert code == 0 and (result["f1"], result["tp"], result["fp"]) == (1.0, 1860, 0)
    assert (result["per_type"]["PROFESION"]["tp"], result["per_type"]["SITUACION_LABORAL"]["tp"]) == (1596, 264)


def test_7b_reads_brat_folders_as_the_corpus_ships_its_gold(tmp_path, capsys):
    gold, pred = tmp_path / "gold", tmp_path / "pred"
    for folder, ann in ((gold, "T1\tPROFESION 0 6\tmédico\nT2\tACTIVIDAD 9 15\tcorrer\n"),
                        (pred, "T1\tPROFESION 0 6\tmédico\nT2\tPROFESION 9 15\tcorrer\n")):
        _write(folder / "1.txt", "médico y correr")
        _write(folder / "1.ann", ann)
        _write(folder / "2.txt", "nada")
        _write(folder / "2.ann", "")
    code, out, _ = _run(capsys, "--task", "7b", "--gold", str(gold), "--pred", str(pred), "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 0)  # ACTIVIDAD is not scored


@pytest.mark.parametrize("task", ["7a", "meddoprof-norm"])
def test_a_folder_where_a_tsv_belongs_is_named(tmp_path, capsys, task):
    folder = tmp_path / "brat"
    folder.mkdir()
    tsv = _write(tmp_path / "x.tsv", "tweet_id\tlabel\n1\t1\n")
    code, _, err = _run(capsys, "--task", task, "--gold", str(folder), "--pred", str(tsv))
    assert code == 1 and str(folder) in err and "folder" in err and "Traceback" not in err
