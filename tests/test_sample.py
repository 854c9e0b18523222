"""The bundled sample corpora: layout, exact offsets, and agreement between their files.

Parsed here with the stdlib only (independent of profner_models.corpus), so a bug in the
reader and a bug in the sample cannot hide each other.
"""

from __future__ import annotations

import csv
import filecmp
import re
from collections import Counter
from pathlib import Path

import pytest

from profner_models.sample import MEDDOPROF_SAMPLE, PROFNER_SAMPLE, SAMPLE_DIR
from profner_models.sample.build_sample import build

PROFNER_TYPES = {"PROFESION", "SITUACION_LABORAL", "ACTIVIDAD", "FIGURATIVA"}
NER_TYPES = {"PROFESION", "SITUACION_LABORAL", "ACTIVIDAD"}
CLASSES = {"PACIENTE", "FAMILIAR", "SANITARIO", "OTROS"}
SPLITS = ("train", "valid")
ANN_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+) (\d+)\t(.*)$")


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:  # BOM kept, no newline rewriting
        return handle.read()


def parse_ann(path: Path) -> list[tuple[str, str, int, int, str]]:
    """(T-id, label, start, end, text) per line; fails on anything that is not a T-line."""
    rows = []
    for lineno, line in enumerate(read(path).splitlines(), start=1):
        match = ANN_LINE.match(line)
        assert match, f"{path}:{lineno}: not a brat T-line: {line!r}"
        tid, label, start, end, text = match.groups()
        rows.append((tid, label, int(start), int(end), text))
    return rows


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in read(path).splitlines()]


@pytest.fixture(scope="module")
def profner() -> dict[str, dict]:
    """Per split: labels (id -> 0/1), texts, brat entities and tsv rows."""
    data = {}
    for split in SPLITS:
        labels_rows = read_tsv(PROFNER_SAMPLE / "subtask-1" / f"{split}.tsv")
        assert labels_rows[0] == ["tweet_id", "label"]
        brat_dir = PROFNER_SAMPLE / "subtask-2" / "brat" / split
        ids = [row[0] for row in labels_rows[1:]]
        data[split] = {
            "ids": ids,
            "labels": {row[0]: int(row[1]) for row in labels_rows[1:]},
            "texts": {i: read(brat_dir / f"{i}.txt") for i in ids},
            "ents": {i: parse_ann(brat_dir / f"{i}.ann") for i in ids},
            "brat_files": sorted(p.name for p in brat_dir.iterdir()),
            "tsv": read_tsv(PROFNER_SAMPLE / "subtask-2" / "tsv" / f"{split}.tsv"),
        }
    return data


@pytest.fixture(scope="module")
def meddoprof() -> dict:
    train = MEDDOPROF_SAMPLE / "meddoprof-training-set"
    names = sorted(p.stem for p in (train / "task1").glob("*.txt"))
    with open(train / "meddoprof-norm-train.tsv", encoding="utf-8", newline="") as handle:
        norm = list(csv.reader(handle, delimiter="\t"))
    with open(MEDDOPROF_SAMPLE / "meddoprof_valid_codes.tsv", encoding="utf-8", newline="") as handle:
        codes = list(csv.reader(handle, delimiter="\t"))
    return {
        "names": names,
        "texts": {n: read(train / "task1" / f"{n}.txt") for n in names},
        "task1": {n: parse_ann(train / "task1" / f"{n}.ann") for n in names},
        "task2": {n: parse_ann(train / "task2" / f"{n}.ann") for n in names},
        "task2_texts": {n: read(train / "task2" / f"{n}.txt") for n in names},
        "task2_files": sorted(p.name for p in (train / "task2").iterdir()),
        "task1_files": sorted(p.name for p in (train / "task1").iterdir()),
        "norm": norm,
        "codes": codes,
    }


def test_package_paths():
    assert PROFNER_SAMPLE == SAMPLE_DIR / "profner" and PROFNER_SAMPLE.is_dir()
    assert MEDDOPROF_SAMPLE == SAMPLE_DIR / "meddoprof" and MEDDOPROF_SAMPLE.is_dir()


def test_files_are_what_the_build_script_writes(tmp_path):
    build(tmp_path)
    for name in ("profner", "meddoprof"):
        mismatch = _tree_differences(tmp_path / name, SAMPLE_DIR / name)
        assert not mismatch, f"sample out of date with build_sample.py (rerun it): {mismatch[:5]}"


def _tree_differences(left: Path, right: Path) -> list[str]:
    files_left = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    files_right = {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    diffs = [f"only in one tree: {p}" for p in sorted(files_left ^ files_right)]
    diffs += [f"differs: {p}" for p in sorted(files_left & files_right)
              if not filecmp.cmp(left / p, right / p, shallow=False)]
    return diffs


# ---------------------------------------------------------------------------------- ProfNER
def test_profner_ids_unique_and_well_formed(profner):
    all_ids = []
    for split in SPLITS:
        ids = profner[split]["ids"]
        assert len(ids) == len(set(ids)), f"duplicate tweet id in {split}"
        assert all(re.fullmatch(r"[1-9]\d{18}", i) for i in ids)
        expected = sorted([f"{i}.ann" for i in ids] + [f"{i}.txt" for i in ids])
        assert profner[split]["brat_files"] == expected, f"brat/{split} does not match subtask-1"
        all_ids += ids
    assert len(all_ids) == len(set(all_ids)), "a tweet is in both train and valid"
    texts = [t for split in SPLITS for t in profner[split]["texts"].values()]
    assert len(texts) == len(set(texts)), "duplicate tweet text"


def test_profner_counts_plausible(profner):
    assert 250 <= len(profner["train"]["ids"]) <= 350
    assert 80 <= len(profner["valid"]["ids"]) <= 120
    for split in SPLITS:
        labels = profner[split]["labels"].values()
        assert 0.25 <= sum(labels) / len(labels) <= 0.40, split
    types = Counter(e[1] for split in SPLITS for ents in profner[split]["ents"].values() for e in ents)
    assert set(types) == PROFNER_TYPES
    assert types["PROFESION"] > types["SITUACION_LABORAL"] > types["ACTIVIDAD"] >= types["FIGURATIVA"]


def test_profner_offsets_exact(profner):
    for split in SPLITS:
        for tid, ents in profner[split]["ents"].items():
            text = profner[split]["texts"][tid]
            for t_id, label, start, end, mention in ents:
                assert label in PROFNER_TYPES, (tid, t_id, label)
                assert 0 <= start < end <= len(text), (tid, t_id)
                assert text[start:end] == mention, (split, tid, t_id, text[start:end], mention)
            assert [e[0] for e in ents] == [f"T{k}" for k in range(1, len(ents) + 1)], tid


def test_profner_label_iff_any_entity(profner):
    for split in SPLITS:
        for tid, label in profner[split]["labels"].items():
            assert label in (0, 1)
            assert label == int(bool(profner[split]["ents"][tid])), (split, tid)


def test_profner_tsv_agrees_with_brat(profner):
    for split in SPLITS:
        rows = profner[split]["tsv"]
        assert rows[0] == ["tweet_id", "begin", "end", "type", "extraction"]
        entity_rows = [r for r in rows[1:] if r[1:] != ["-"] * 4]
        empty_rows = [r[0] for r in rows[1:] if r[1:] == ["-"] * 4]
        # Like the real file: every entity row first, then one "- - - -" row per empty tweet.
        assert rows[1:] == entity_rows + [[i, "-", "-", "-", "-"] for i in empty_rows]
        ents = profner[split]["ents"]
        assert sorted(empty_rows) == sorted(i for i, e in ents.items() if not e)
        from_tsv: dict[str, list] = {}
        for tid, begin, end, typ, text in entity_rows:
            from_tsv.setdefault(tid, []).append((typ, int(begin), int(end), text))
        from_brat = {i: [e[1:] for e in es] for i, es in ents.items() if es}
        assert from_tsv == from_brat, split  # same entities, same order within each tweet


def test_profner_hard_cases_present(profner):
    ents = {tid: es for split in SPLITS for tid, es in profner[split]["ents"].items()}
    texts = {tid: t for split in SPLITS for tid, t in profner[split]["texts"].items()}
    spans = {tid: [(s, e, typ) for _, typ, s, e, _ in es] for tid, es in ents.items()}
    duplicates = [tid for tid, ss in spans.items() if len(ss) != len(set(ss))]
    nested = [tid for tid, ss in spans.items()
              if any(a != b and a[0] <= b[0] and b[1] <= a[1] for a in ss for b in ss)]
    assert len(duplicates) == 1 and len(nested) == 1
    starts = [(texts[tid], s) for tid, ss in spans.items() for s, _, _ in ss]
    assert sum(any(ord(c) > 0xFFFF for c in text[:s]) for text, s in starts) >= 5, "emoji before entities"
    assert any("\u200d" in text[:s] for text, s in starts), "ZWJ sequence before an entity"
    assert any("\n" in text[:s] for text, s in starts), "line break before an entity"
    mentions = [m for es in ents.values() for *_, m in es]
    assert any(m.startswith("#") for m in mentions) and any(m.startswith("@") for m in mentions)
    assert any(" " in m for m in mentions), "multi-word mentions"
    negatives = [texts[tid] for tid, es in ents.items() if not es]
    assert sum("https://t.co/" in t for t in negatives) >= 5


def test_profner_gazetteer():
    rows = read_tsv(PROFNER_SAMPLE / "gazetteer" / "profner-gazetteer.tsv")
    assert 200 <= len(rows) <= 1000
    assert all(len(r) == 2 and r[0].strip() and r[1].strip() for r in rows)
    assert len({r[0] for r in rows}) == len(rows)
    terms = {r[0] for r in rows}
    assert {"enfermera", "médicos", "ERTE", "en paro"} <= terms


# -------------------------------------------------------------------------------- MEDDOPROF
def test_meddoprof_layout_and_counts(meddoprof):
    names = meddoprof["names"]
    assert 25 <= len(names) <= 40
    assert meddoprof["task1_files"] == meddoprof["task2_files"]
    assert meddoprof["task1_files"] == sorted([f"{n}.txt" for n in names] + [f"{n}.ann" for n in names])
    assert all(meddoprof["texts"][n] == meddoprof["task2_texts"][n] for n in names)
    for name, text in meddoprof["texts"].items():
        assert 5 <= len(text.splitlines()) <= 15, name
    assert sum(bool(es) for es in meddoprof["task1"].values()) < len(names), "a case without mentions"


def test_meddoprof_offsets_exact_with_bom(meddoprof):
    bom_with_mentions = 0
    for name, ents in meddoprof["task1"].items():
        text = meddoprof["texts"][name]
        for t_id, label, start, end, mention in ents:
            assert label in NER_TYPES, (name, t_id)
            assert text[start:end] == mention, (name, t_id, text[start:end], mention)
        if text.startswith("\ufeff") and ents:
            bom_with_mentions += 1
            assert text.lstrip("\ufeff")[ents[0][2]:ents[0][3]] != ents[0][4]  # the BOM counts
    assert bom_with_mentions >= 2


def test_meddoprof_task2_same_spans_with_classes(meddoprof):
    for name in meddoprof["names"]:
        t1, t2 = meddoprof["task1"][name], meddoprof["task2"][name]
        assert [(e[0], e[2], e[3], e[4]) for e in t1] == [(e[0], e[2], e[3], e[4]) for e in t2]
        assert all(e[1] in CLASSES for e in t2), name


def test_meddoprof_norm_covers_every_mention(meddoprof):
    norm, codes = meddoprof["norm"], meddoprof["codes"]
    assert norm[0] == ["filename", "text", "span", "code"]
    assert codes[0] == ["code", "label", "alternative_label"]
    valid = {row[0] for row in codes[1:]}
    assert 30 <= len(valid) <= 100 and len(valid) == len(codes) - 1
    assert any(c.startswith("SCTID: ") for c in valid) and any(re.fullmatch(r"\d+(\.\d+)*", c) for c in valid)
    from_norm = Counter()
    for filename, text, span, code in norm[1:]:
        assert code in valid, (filename, span, code)
        start, end = map(int, span.split(" "))
        assert meddoprof["texts"][filename][start:end] == text, (filename, span)
        from_norm[(filename, start, end, text)] += 1
    from_ann = Counter((n, s, e, m) for n, es in meddoprof["task1"].items() for _, _, s, e, m in es)
    assert from_norm == from_ann
    assert any('"' in text for _, text, _, _ in norm[1:]), "a quoted mention exercises TSV quoting"


def test_meddoprof_mix_of_types_classes_and_nesting(meddoprof):
    types = Counter(e[1] for es in meddoprof["task1"].values() for e in es)
    classes = Counter(e[1] for es in meddoprof["task2"].values() for e in es)
    assert set(types) == NER_TYPES and set(classes) == CLASSES
    assert types["PROFESION"] > types["SITUACION_LABORAL"] > types["ACTIVIDAD"]
    nested = [n for n, es in meddoprof["task1"].items()
              if any(a != b and a[2] <= b[2] and b[3] <= a[3] for a in es for b in es)]
    assert nested
