"""Write the bundled sample corpora (ProfNER and MEDDOPROF layouts) from hand-written text.

The texts live in ``source/``: ``tweets.json`` (hand-written tweets and the parts of the
templated ones), ``cases/NN-<name>.txt`` (one clinical case each) and ``vocabularies.json``
(NORM codes, gazetteer rows). Every tweet and clinical case was written for this project;
nothing is copied from the real corpora (only public ESCO / SNOMED CT code identifiers and their
labels are reused). Entities are marked inline and their offsets computed here, so they are
exact by construction:

    ProfNER:    [[médicos|P]]                 P/S/A/F = PROFESION, SITUACION_LABORAL,
                                              ACTIVIDAD, FIGURATIVA
                [[consejera|P|x2]]            the same span annotated twice (exact duplicate)
                [[portavoz de la [[Policía Nacional|P]]|P]]   nested spans
    MEDDOPROF:  [[albañil|P|PAC|7112.1]]      type, class (PAC/FAM/SAN/OTR), NORM code

Offsets are Python ``str`` indices (code points), end exclusive; a MEDDOPROF text that starts
with a BOM counts it as character 0, as the real corpus does.  Output is deterministic: run
``python -m profner_models.sample.build_sample`` after editing the texts and commit the result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

TYPES = {"P": "PROFESION", "S": "SITUACION_LABORAL", "A": "ACTIVIDAD", "F": "FIGURATIVA"}
CLASSES = {"PAC": "PACIENTE", "FAM": "FAMILIAR", "SAN": "SANITARIO", "OTR": "OTROS"}

SOURCE = HERE / "source"


def _json(name: str):
    return json.loads((SOURCE / name).read_text(encoding="utf-8"))


# The texts, as written (file order and ids follow list positions: append rather than insert).
TWEETS = _json("tweets.json")
"""``positive`` and ``negative`` marked tweets, and the ``templates`` of the templated ones."""
VOCABULARIES = _json("vocabularies.json")
"""``valid_codes`` (code, label, alternative labels), the gazetteer's ``gazetteer_forms``
(masculine and feminine singular and plural; the lemma is the first) and ``gazetteer_extra``
(term, lemma) rows."""


def marked_cases() -> list[tuple[str, str]]:
    """(document name, marked text) of ``source/cases/NN-<name>.txt`` in NN order; a text
    that starts with a BOM keeps it (character 0, as in the real corpus)."""
    return [(path.stem.split("-", 1)[1], path.read_text(encoding="utf-8"))
            for path in sorted((SOURCE / "cases").glob("*.txt"))]


def _url_code(k: int) -> str:
    return hashlib.sha256(f"url{k}".encode()).hexdigest()[:10]


def templated_tweets() -> tuple[list[str], list[str]]:
    """(positives, negatives) built from the template parts; every text is distinct."""
    parts = TWEETS["templates"]
    cities = parts["cities"]
    negatives = []
    for k in range(parts["n_negatives"]):
        opener = parts["openers"][k % len(parts["openers"])]
        body = parts["bodies"][(k * 5) % len(parts["bodies"])]
        closer = parts["closers"][(k * 3) % len(parts["closers"])]
        fields = dict(n=10 + k, week=1 + k % 12, city=cities[k % len(cities)],
                      phase=1 + k % 3, num=30 + 7 * k, deaths=k % 9, code=_url_code(k))
        negatives.append((opener + ": " + body + closer).format(**fields))
    positives = []
    for k in range(parts["n_positives"]):
        template = parts["positives"][k % len(parts["positives"])]
        positives.append(template.format(
            prof=parts["professions"][k % len(parts["professions"])],
            city=cities[(k * 4) % len(cities)],
            act=parts["acts"][(k * 3) % len(parts["acts"])],
            emoji=parts["emoji"][k % len(parts["emoji"])]))
    return positives, negatives


# --------------------------------------------------------------------------------------------
# Parsing the inline markup
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    type: str
    text: str
    cls: str | None = None
    code: str | None = None


_CLOSE = re.compile(r"\|([^\[\]|]+)(?:\|([^\[\]|]+))?(?:\|([^\[\]|]+))?\]\]")


def parse_marked(marked: str, *, meddoprof: bool = False) -> tuple[str, list[Mention]]:
    """Strip ``[[span|...]]`` markup; return the plain text and its mentions in opening order."""
    out: list[str] = []
    pos = 0  # length of the plain text written so far
    stack: list[tuple[int, int]] = []  # (plain-text start, order of opening)
    found: list[tuple[int, Mention]] = []
    opened = 0
    i = 0
    while i < len(marked):
        if marked.startswith("[[", i):
            stack.append((pos, opened))
            opened += 1
            i += 2
            continue
        m = _CLOSE.match(marked, i) if stack else None
        if m:
            start, order = stack.pop()
            span = "".join(out)[start:pos]
            fields = [g for g in m.groups() if g is not None]
            found.extend((order, mention) for mention in _mentions(start, pos, span, fields, meddoprof))
            i = m.end()
            continue
        out.append(marked[i])
        pos += 1
        i += 1
    if stack:
        raise ValueError(f"unclosed [[ in {marked[:60]!r}")
    found.sort(key=lambda pair: pair[0])
    return "".join(out), [mention for _, mention in found]


def _mentions(start: int, end: int, span: str, fields: list[str], meddoprof: bool) -> list[Mention]:
    if meddoprof:
        type_key, cls_key, code = fields
        return [Mention(start, end, TYPES[type_key], span, CLASSES[cls_key], code)]
    copies = 2 if fields[1:] == ["x2"] else 1
    return [Mention(start, end, TYPES[fields[0]], span)] * copies


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _order_key(name: str) -> str:
    """A stable pseudo-random order (the real files are not sorted either)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def tweet_id(index: int) -> str:
    """A 19-digit id of our own (prefix 19, so it never collides with a real 12... id)."""
    digest = int(hashlib.sha256(f"profner-sample-{index}".encode()).hexdigest(), 16)
    return str(19 * 10**17 + digest % 10**17)


def _ann_lines(mentions: list[Mention], label_of) -> str:
    return "".join(f"T{k}\t{label_of(m)} {m.start} {m.end}\t{m.text}\n"
                   for k, m in enumerate(mentions, start=1))


def all_tweets() -> list[tuple[str, str, list[Mention]]]:
    """(tweet id, text, mentions) in list order: hand-written first, then templated."""
    template_pos, template_neg = templated_tweets()
    marked = TWEETS["positive"] + TWEETS["negative"] + template_pos + template_neg
    tweets = []
    for index, source in enumerate(marked):
        text, mentions = parse_marked(source)
        if len(mentions) > 1 and index % 3 == 0:
            mentions = mentions[::-1]  # brat T-numbers need not follow the text order
        tweets.append((tweet_id(index), text, mentions))
    return tweets


def split_of(index: int) -> str:
    return "valid" if index % 4 == 3 else "train"


def write_profner(root: Path) -> None:
    tweets = all_tweets()
    for split in ("train", "valid"):
        part = [t for i, t in enumerate(tweets) if split_of(i) == split]
        part.sort(key=lambda t: _order_key(t[0]))
        labels = ["tweet_id\tlabel\n"] + [f"{tid}\t{int(bool(ms))}\n" for tid, _, ms in part]
        _write(root / "subtask-1" / f"{split}.tsv", "".join(labels))
        rows = ["tweet_id\tbegin\tend\ttype\textraction\n"]
        rows += [f"{tid}\t{m.start}\t{m.end}\t{m.type}\t{m.text}\n"
                 for tid, _, ms in part for m in ms]
        rows += [f"{tid}\t-\t-\t-\t-\n" for tid, _, ms in part if not ms]
        _write(root / "subtask-2" / "tsv" / f"{split}.tsv", "".join(rows))
        for tid, text, mentions in part:
            brat = root / "subtask-2" / "brat" / split
            _write(brat / f"{tid}.txt", text)
            _write(brat / f"{tid}.ann", _ann_lines(mentions, lambda m: m.type))
    _write(root / "gazetteer" / "profner-gazetteer.tsv",
           "".join(f"{term}\t{lemma}\n" for term, lemma in gazetteer_rows()))


def gazetteer_rows() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for forms in VOCABULARIES["gazetteer_forms"]:
        lemma = forms[0].lower()
        rows.extend((form, lemma) for form in forms if form is not None)
    rows.extend(tuple(row) for row in VOCABULARIES["gazetteer_extra"])
    return sorted(set(rows), key=lambda row: (row[0].lower(), row[0]))


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def all_cases() -> list[tuple[str, str, list[Mention]]]:
    return [(name, *parse_marked(marked, meddoprof=True)) for name, marked in marked_cases()]


def write_meddoprof(root: Path) -> None:
    train = root / "meddoprof-training-set"
    norm_rows = []
    for name, text, mentions in all_cases():
        for task, label_of in (("task1", lambda m: m.type), ("task2", lambda m: m.cls)):
            _write(train / task / f"{name}.txt", text)
            _write(train / task / f"{name}.ann", _ann_lines(mentions, label_of))
        norm_rows += [(name, m) for m in mentions]
    norm_rows.sort(key=lambda row: _order_key(f"{row[0]}:{row[1].start}:{row[1].end}"))
    lines = ['"filename"\t"text"\t"span"\t"code"\n']
    lines += [f"{_quote(name)}\t{_quote(m.text)}\t{_quote(f'{m.start} {m.end}')}\t{_quote(m.code)}\n"
              for name, m in norm_rows]
    _write(train / "meddoprof-norm-train.tsv", "".join(lines))
    codes = ['"code"\t"label"\t"alternative_label"\n']
    codes += [f"{_quote(code)}\t{_quote(label)}\t{_quote(alt) if alt else ''}\n"
              for code, label, alt in VOCABULARIES["valid_codes"]]
    _write(root / "meddoprof_valid_codes.tsv", "".join(codes))


def build(out_dir: Path) -> None:
    """(Re)write ``profner/`` and ``meddoprof/`` under ``out_dir``."""
    for name, writer in (("profner", write_profner), ("meddoprof", write_meddoprof)):
        target = out_dir / name
        if target.exists():
            shutil.rmtree(target)
        writer(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: the package)")
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
