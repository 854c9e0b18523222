"""Entity-substitution augmentation: exact offsets, same-type fillers, LM-ranked keep, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from profner_models.corpus import load_corpus
from profner_models.corpus.augment import augment_documents, scorers
from profner_models.documents import Document, Span
from profner_models.spans import apply_span_policy

SAMPLE = Path(__file__).resolve().parents[1] / "profner_models" / "sample" / "meddoprof"
TYPES = ["PROFESION", "SITUACION_LABORAL", "ACTIVIDAD"]


def make_doc(doc_id: str, parts: list[str | tuple[str, str, str, str]], label: int | None = None) -> Document:
    """Text from plain strings and (text, type, cls, code) entity pieces, offsets computed."""
    text, spans = "", []
    for part in parts:
        if isinstance(part, tuple):
            surface, type_, cls, code = part
            spans.append(Span(len(text), len(text) + len(surface), type_, surface, cls, code))
            part = surface
        text += part
    return Document(doc_id, text, spans, label)


def small_docs() -> list[Document]:
    return [
        make_doc("a", ["Paciente ", ("albañil", "PROFESION", "PACIENTE", "7121"), " que ",
                       ("juega al fútbol", "ACTIVIDAD", "PACIENTE", "NA"), " los domingos con su hermano ",
                       ("médico", "PROFESION", "FAMILIAR", "2211"), "."], label=1),
        make_doc("b", ["Mujer ", ("jubilada", "SITUACION_LABORAL", "PACIENTE", "NA"), " que ",
                       ("sale a correr", "ACTIVIDAD", "PACIENTE", "NA"), " cada mañana."]),
        make_doc("c", ["Refiere que ", ("hace ejercicio a diario", "ACTIVIDAD", "PACIENTE", "NA"), " y que ",
                       ("cuida de su madre", "ACTIVIDAD", "PACIENTE", "NA"), " por las tardes."]),
        make_doc("d", ["Sin antecedentes de interés."]),
    ]


def config(**augment) -> dict:
    block = {"types": ["ACTIVIDAD"], "copies": 3, "keep": 0.5, "seed": 13, "scorer": {"name": "ngram", "order": 3}}
    block.update(augment)
    return {"data": {"augment": block}}


def added(docs: list[Document], cfg: dict) -> list[Document]:
    out = augment_documents(docs, cfg)
    assert out[:len(docs)] == docs
    return out[len(docs):]


def substitution(aug: Document, originals: dict[str, Document]) -> tuple[Span, Span]:
    """The one (original, new) span pair that differs in text, cls or code."""
    source = originals[aug.id.split("#aug")[0]]
    changed = [(old, new) for old, new in zip(source.spans, aug.spans)
               if (old.text, old.cls, old.code) != (new.text, new.cls, new.code)]
    assert len(changed) == 1
    return changed[0]


def assert_consistent(aug: Document, originals: dict[str, Document], types: list[str]) -> None:
    """Every span reads its text; exactly one span changed, to another filler of its type."""
    source = originals[aug.id.split("#aug")[0]]
    assert aug.label == source.label
    assert len(aug.spans) == len(source.spans)
    for span in aug.spans:
        assert aug.text[span.start:span.end] == span.text
    old, new = substitution(aug, originals)
    assert new.type == old.type and new.type in types and new.text != old.text
    fillers = {(uncapitalised(s.text), s.cls, s.code)
               for d in originals.values() for s in d.spans if s.type == new.type}
    assert (uncapitalised(new.text), new.cls, new.code) in fillers
    assert new.text[:1].isupper() == old.text[:1].isupper()  # the place's capitalisation
    shift = len(new.text) - len(old.text)
    assert aug.text == source.text[:old.start] + new.text + source.text[old.end:]
    for before, after in zip(source.spans, aug.spans):
        if before is not old:
            assert after.start == before.start + (shift if before.start >= old.end else 0)


def uncapitalised(text: str) -> str:
    return text[:1].lower() + text[1:]


def test_filler_takes_the_capitalisation_of_the_span_it_replaces() -> None:
    docs = [make_doc("a", [("Le gusta el remo", "ACTIVIDAD", "PACIENTE", "NA"), ". Hoy ingresa."]),
            make_doc("b", ["Dice que ", ("juega al fútbol", "ACTIVIDAD", "PACIENTE", "NA"), "."])]
    new = {d.id: d for d in added(docs, config(keep=1.0))}
    assert new["a#aug0"].text == "Juega al fútbol. Hoy ingresa."
    assert new["b#aug0"].text == "Dice que le gusta el remo."
    assert new["b#aug0"].spans[0].text == "le gusta el remo"


def test_off_by_default_returns_input() -> None:
    docs = small_docs()
    for cfg in ({}, {"data": {}}, {"data": {"augment": None}}, {"data": {"augment": False}}):
        assert augment_documents(docs, cfg) is docs


def test_offsets_fillers_and_keep_fraction() -> None:
    docs = small_docs()
    new = added(docs, config(keep=1.0))
    # 4 ACTIVIDAD texts: a and b have 3 possible substitutions each, c 2 spans x 3; copies caps at 3
    assert [d.id for d in new] == ["a#aug0", "a#aug1", "a#aug2", "b#aug0", "b#aug1", "b#aug2",
                                   "c#aug0", "c#aug1", "c#aug2"]
    originals = {d.id: d for d in docs}
    for doc in new:
        assert_consistent(doc, originals, ["ACTIVIDAD"])
    assert len({(d.id.split("#")[0], d.text) for d in new}) == len(new)  # distinct candidates
    assert len(added(docs, config(keep=0.5))) == round(0.5 * 9)
    assert len(added(docs, config(keep=0.01))) == 1
    assert len(added(docs, config(copies=1, keep=1.0))) == 3


def test_several_types_and_span_shift_after_longer_filler() -> None:
    docs = small_docs()
    new = added(docs, config(types=["ACTIVIDAD", "PROFESION"], copies=5, keep=1.0))
    originals = {d.id: d for d in docs}
    for doc in new:
        assert_consistent(doc, originals, ["ACTIVIDAD", "PROFESION"])
    # doc a has spans after the substituted ones: check some candidate moved them
    assert any(d.id.startswith("a#") and d.spans[-1].start != docs[0].spans[-1].start for d in new)


def test_deterministic_for_a_seed() -> None:
    docs = small_docs()
    first = added(docs, config(seed=1))
    assert first == added(docs, config(seed=1))
    texts = {seed: [d.text for d in added(docs, config(seed=seed, keep=1.0))] for seed in range(4)}
    assert len({tuple(t) for t in texts.values()}) > 1
    # the seed defaults to training.seed
    cfg = config()
    del cfg["data"]["augment"]["seed"]
    assert added(docs, {**cfg, "training": {"seed": 1}}) == first


def test_overlapping_span_is_never_replaced() -> None:
    docs = small_docs()
    outer = Span(0, 26, "PROFESION", "Paciente albañil que juega", None, None)
    docs[0].spans.insert(0, outer)
    new = added(docs, config(keep=1.0))
    assert not [d for d in new if d.id.startswith("a#")]


def test_span_text_mismatch_names_the_document() -> None:
    docs = small_docs()
    docs[1].spans[0] = Span(6, 14, "SITUACION_LABORAL", "jubilado", "PACIENTE", "NA")
    with pytest.raises(ValueError, match=r"'b#aug0'.*jubilado"):
        augment_documents(docs, config(keep=1.0))


def test_ngram_ranks_fluent_above_shuffled() -> None:
    corpus = ["El paciente trabaja como albañil en una obra de la ciudad.",
              "La paciente trabaja como enfermera en un hospital de la ciudad.",
              "El padre del paciente trabaja como camarero en un bar de la playa.",
              "Refiere que juega al fútbol los domingos con sus amigos."]
    scorer = scorers.build({"name": "ngram", "order": 3}, docs=[Document(str(i), t) for i, t in enumerate(corpus)])
    fluent = " como enfermera en un hospital de la ciudad."
    shuffled = " hospital como un la enfermera ciudad en de."
    assert scorer.score("El paciente", " trabaja", fluent) > scorer.score("El paciente", " trabaja", shuffled)
    assert scorer.score("El paciente trabaja", " como", " camarero en un bar") > \
        scorer.score("El paciente trabaja", " como", " bar un en camarero")
    assert math.isfinite(scorer.score("El paciente", " trabajaba", " de fontanero"))  # unseen: floor, not -inf


def test_ngram_keeps_the_fluent_candidates() -> None:
    """A filler that reads like its context should outrank one that does not."""
    docs = [make_doc(str(i), ["El paciente ", (act, "ACTIVIDAD", "PACIENTE", "NA"), " los fines de semana."])
            for i, act in enumerate(["juega al fútbol", "juega al tenis", "juega al pádel", "tenis fútbol al"])]
    docs += [make_doc(f"x{i}", ["Sus amigos juegan al fútbol y al tenis y al pádel los fines de semana."]) for i in range(3)]
    kept = added(docs, config(copies=3, keep=0.25))
    assert kept and all("tenis fútbol al" not in d.text for d in kept)


def test_bundled_meddoprof_sample() -> None:
    docs, _ = load_corpus(SAMPLE, "train")
    docs, _ = apply_span_policy(docs, types=TYPES, overlap="keep_outer")
    with_act = [d for d in docs if any(s.type == "ACTIVIDAD" for s in d.spans)]
    new = added(docs, config(copies=2, keep=0.5))
    n_candidates = 2 * len(with_act)  # 3 distinct ACTIVIDAD texts: 2 substitutions per doc
    assert len(new) == max(1, round(0.5 * n_candidates))
    originals = {d.id: d for d in docs}
    for doc in new:
        assert_consistent(doc, originals, ["ACTIVIDAD"])


CALLS: list[tuple[str, str, str]] = []


@scorers.register("test_shortest.v1")
def build_shortest(block: dict, docs: list[Document]) -> object:
    """A registered stand-in LM: the shorter the filler, the better; records what it saw."""
    class Shortest:
        def score(self, left: str, filler: str, right: str) -> float:
            CALLS.append((left, filler, right))
            return -len(filler)
    return Shortest()


def test_keeps_the_best_scores_of_a_registered_scorer_on_a_word_window() -> None:
    docs = small_docs()
    originals = {d.id: d for d in docs}
    CALLS.clear()
    kept = added(docs, config(keep=0.34, window=2, scorer={"name": "test_shortest"}))
    assert len(CALLS) == 9 and len(kept) == 3
    best = sorted(len(filler.strip()) for _, filler, _ in CALLS)[:3]
    assert sorted(len(substitution(d, originals)[1].text) for d in kept) == best
    assert [d.id for d in kept] == sorted(d.id for d in kept)  # generation order, not score order
    # the window: 2 words either side; the space before the span goes with the filler
    left, filler, right = next(c for c in CALLS if c[2].startswith(" los domingos"))
    assert (left, right) == ("albañil que", " los domingos") and filler.startswith(" ")


@pytest.mark.parametrize(("augment", "message"), [
    ({"keep": 0}, r"data\.augment\.keep"),
    ({"keep": 1.5}, r"data\.augment\.keep"),
    ({"copies": 0}, r"data\.augment\.copies"),
    ({"types": ["OFICIO"]}, r"data\.augment\.types.*OFICIO"),
    ({"types": []}, r"data\.augment\.types"),
    ({"scorer": {"name": "bert"}}, r"data\.augment\.scorer\.name: .*'bert'.*causal_lm\.v1, ngram\.v1"),
    ({"scorer": {"name": "ngram", "order": 0}}, r"data\.augment\.scorer\.order"),
    ({"scorer": {"name": "ngram", "smoothing": "kn"}}, r"data\.augment\.scorer\.smoothing: unknown key"),
    ({"copy": 3}, r"data\.augment\.copy: unknown key \(did you mean 'copies'\?\)"),
])
def test_config_errors(augment: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        augment_documents(small_docs(), config(**augment))


def build_tiny_gpt2(directory: Path) -> Path:
    """A random 1-layer GPT-2 and a byte-level BPE tokenizer trained on a few sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    texts = [d.text for d in small_docs()] * 3
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>").save_pretrained(directory)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=256, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


def test_causal_lm_scorer_on_a_tiny_local_gpt2(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model_dir = build_tiny_gpt2(tmp_path / "gpt2")
    scorer = scorers.build({"name": "causal_lm", "model": str(model_dir)}, docs=[])
    assert math.isfinite(scorer.score("", "Paciente", " albañil"))
    value = scorer.score("Mujer jubilada que", " sale a correr", " cada mañana.")
    assert math.isfinite(value) and value < 0
    docs = small_docs()
    new = added(docs, config(keep=0.5, scorer={"name": "causal_lm", "model": str(model_dir)}))
    assert len(new) == round(0.5 * 9)
    originals = {d.id: d for d in docs}
    for doc in new:
        assert_consistent(doc, originals, ["ACTIVIDAD"])
