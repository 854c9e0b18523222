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
    pred = _write(tmp_path / "pred.tsv", header + '"c1"\t"enfermera"\t"13 22"\t"2221.1"\n')
    code, out, _ = _run(capsys, "--task", "meddoprof-norm", "--gold", str(gold), "--pred", str(pred), "--json")
    result = json.loads(out)
    assert code == 0 and (result["precision"], result["recall"]) == (1.0, 0.5)


def test_bad_input_is_reported(tmp_path, capsys):
    gold = _write(tmp_path / "gold.tsv", "tweet_id\tlabel\n1\t1\n")
    bad = _write(tmp_path / "bad.tsv", "tweet_id\tlabel\n1\tyes\n")
    code, _, err = _run(capsys, "--task", "7a", "--gold", str(gold), "--pred", str(bad))
    assert code == 1 and "bad.tsv:2" in err
    code, _, err = _run(capsys, "--task", "7a", "--gold", str(gold), "--pred", str(tmp_path / "none.tsv"))
    assert code == 1 and "none.tsv" in err


@pytest.mark.realdata
def test_real_gold_against_itself(real_data_dir, capsys):
    tsv = real_data_dir / "profner" / "subtask-2" / "tsv" / "train.tsv"
    code, out, _ = _run(capsys, "--task", "7b", "--gold", str(tsv), "--pred", str(tsv), "--json")
    result = json.loads(out)
    # 1,597 + 264 scored rows, one exact duplicate ("Lehendakari") counted once
    assert code == 0 and (result["f1"], result["tp"], result["fp"]) == (1.0, 1860, 0)
    assert (result["per_type"]["PROFESION"]["tp"], result["per_type"]["SITUACION_LABORAL"]["tp"]) == (1596, 264)
