"""The customised spaCy tokenizer: offsets, whitespace, and the rules the real corpora needed
(the real-corpus boundary check is tests/test_tags.py::alignment on ProfNER and MEDDOPROF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from profner_models.sample import MEDDOPROF_SAMPLE, PROFNER_SAMPLE
from profner_models.text import tokenize as tokenize_module
from profner_models.text.tokenize import MAX_RUN, Token, get_tokenizer, tokenize


def words(text: str) -> list[str]:
    return [t.text for t in tokenize(text)]


def test_offsets_point_into_the_text_and_whitespace_is_no_token():
    text = "El  médico\n\nde 👩🏽‍⚕️ guardia\t(Madrid) \u00a0 https://t.co/x1 \n"
    tokens = tokenize(text)
    assert all(isinstance(t, Token) and text[t.start:t.end] == t.text for t in tokens)
    assert all(t.text.strip() for t in tokens)
    assert [t.start for t in tokens] == sorted(t.start for t in tokens)
    assert words(text) == ["El", "médico", "de", "👩🏽\u200d⚕️", "guardia", "(", "Madrid", ")",
                           "https://t.co/x1"]


def test_empty_and_blank_text():
    assert tokenize("") == []
    assert tokenize(" \n\t ") == []


@pytest.mark.parametrize("run", ["!" * 10_000, "😀" * 3_000, "a!" * 2_000, "é" * 500 + "?" * 500])
def test_long_runs_are_tokenised_in_bounded_pieces(run, monkeypatch):
    """spaCy's affix loop is quadratic in a whitespace-free run: no piece it gets may hold a run
    longer than MAX_RUN, and the pieces' tokens still cover the text with exact offsets."""
    stock = get_tokenizer()
    seen: list[str] = []

    class Recording:
        rules = stock.rules

        def __call__(self, text):
            seen.append(text)
            return stock(text)

    monkeypatch.setattr(tokenize_module, "get_tokenizer", Recording)
    monkeypatch.setattr(tokenize_module, "_chunk_spans", {})
    text = f"Soy enfermera {run} y camionero"
    tokens = tokenize(text)
    assert max(len(word) for piece in seen for word in piece.split()) <= MAX_RUN
    assert all(text[t.start:t.end] == t.text for t in tokens)
    assert "".join(t.text for t in tokens) == "".join(text.split())
    assert [t.text for t in tokens[:2]] == ["Soy", "enfermera"]
    assert [t.text for t in tokens[-2:]] == ["y", "camionero"]


def test_runs_up_to_max_run_are_one_piece():
    url = "https://example.org/" + "a" * (MAX_RUN - 20)
    assert len(url) == MAX_RUN and words(f"ver {url} hoy") == ["ver", url, "hoy"]


def test_tokenizer_is_built_once():
    assert get_tokenizer() is get_tokenizer()


@pytest.mark.parametrize("text, expected", [
    # gold boundaries that fell inside stock spaCy tokens (ProfNER train, MEDDOPROF task1)
    ("científicos y médicos!#COVID19", ["científicos", "y", "médicos", "!", "#", "COVID19"]),
    ("todos los políticos?Y sobre", ["todos", "los", "políticos", "?", "Y", "sobre"]),
    ('según los sanitarios"Han', ["según", "los", "sanitarios", '"', "Han"]),
    ("la Guardia Civil.176 años", ["la", "Guardia", "Civil", ".", "176", "años"]),
    ("la educadora del cAS.en junio", ["la", "educadora", "del", "cAS", ".", "en", "junio"]),
    ("relación médico-paciente", ["relación", "médico", "-", "paciente"]),
    ("médico‐paciente", ["médico", "‐", "paciente"]),
    ("hijos.\n-Ama de casa", ["hijos", ".", "-", "Ama", "de", "casa"]),
    ("una enfermera- gestora", ["una", "enfermera", "-", "gestora"]),
    ("con sus MdF.\nEn la", ["con", "sus", "MdF", ".", "En", "la"]),
    ("como \u0308cantaor \u0308, fumador", ["como", "\u0308", "cantaor", "\u0308", ",", "fumador"]),
    ("#PoliciaNacional y #Empresarios", ["#", "PoliciaNacional", "y", "#", "Empresarios"]),
    ("sesión.#COVID19,#SíALaVida", ["sesión", ".", "#", "COVID19", ",", "#", "SíALaVida"]),
    ("dinero.pero nada", ["dinero", ".", "pero", "nada"]),
    # and where unseen tweets had them (2,000 tweets outside ../shared/data)
    ("el .director general", ["el", ".", "director", "general"]),
    ('Basurero:"Hoy no', ["Basurero", ":", '"', "Hoy", "no"]),
    ("Ministro:“No hay", ["Ministro", ":", "“", "No", "hay"]),
    ("Ministro:«No", ["Ministro", ":", "«", "No"]),
    ('dijo."Hola', ["dijo", ".", '"', "Hola"]),
    ("hola,.director", ["hola", ",.", "director"]),
    ("enfermera;médico|camarero", ["enfermera", ";", "médico", "|", "camarero"]),
    # what must stay whole
    ("a las 20:00h :D", ["a", "las", "20:00h", ":D"]),
    (".5 puntos", [".5", "puntos"]),
])
def test_rules_measured_on_the_corpora(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Gracias👏🏻a todos", ["Gracias", "👏🏻", "a", "todos"]),  # skin tone stays with its emoji
    ("🇪🇸🇪🇸España", ["🇪🇸", "🇪🇸", "España"]),  # flags: one token per regional-indicator pair
    ("👩‍⚕️médica", ["👩\u200d⚕️", "médica"]),  # ZWJ sequence whole, VS16 not glued to the word
    ("❤️Retener", ["❤️", "Retener"]),
    ("1️⃣Arruinan", ["1️⃣", "Arruinan"]),
    ("🏼https://t.co/89IGiAzOzD", ["🏼", "https://t.co/89IGiAzOzD"]),
])
def test_emoji_sequences_are_one_token(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("@guardiacivil que", ["@guardiacivil", "que"]),  # mentions stay whole (gold includes the @)
    ("en @el_pais,“Estamos", ["en", "@el_pais", ",", "“", "Estamos"]),
    ("\u2066@rtve\u2069 dice", ["@rtve", "dice"]),  # bidi isolates are no tokens
    ("\ufeffMujer de 40", ["Mujer", "de", "40"]),  # BOM glued to the first word
    ("escribe a info@angelblau.com ya", ["escribe", "a", "info@angelblau.com", "ya"]),
    ("ver https://t.co/abc?x=1. Fin", ["ver", "https://t.co/abc?x=1", ".", "Fin"]),
    ("EE.UU. y p.ej. 3,5€", ["EE.UU.", "y", "p.ej.", "3,5", "€"]),
    ("-&gt; R0&lt;1", ["-", "&gt;", "R0", "&lt;", "1"]),
    ("España(AISE) covid-19,miles", ["España", "(", "AISE", ")", "covid-19", ",", "miles"]),
])
def test_twitter_and_clinical_tokens(text, expected):
    assert words(text) == expected


def _whole_text(text: str) -> list[Token]:
    """spaCy's tokenizer over the whole text at once (as tokenize ran before it went chunk by
    chunk): the reference for texts without runs longer than MAX_RUN."""
    return [Token(t.text, t.idx, t.idx + len(t)) for t in get_tokenizer()(text)
            if not t.text.isspace() and not tokenize_module._INVISIBLE_RUN.fullmatch(t.text)]


def _texts(root: Path, pattern: str, limit: int) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(root.glob(pattern))[:limit]]


SPACING = ["hola\u00a0mundo\u2009y\u3000adiós", "a\n\nb\t\tc\r\nd", " \u200bcamarero\u200b ",
           "médico-paciente\n#COVID19\u00a0@sanidad", "\ufeffEnfermera:\u2066@rtve\u2069 hoy"]


def test_chunk_by_chunk_equals_the_whole_text_at_once():
    """spaCy splits at whitespace and tokenises each chunk alone, so the remembered chunks give
    the tokens of the whole text: on unusual spacing and the bundled sample corpora."""
    texts = SPACING + _texts(PROFNER_SAMPLE / "subtask-2" / "brat", "*/*.txt", 400) + _texts(
        MEDDOPROF_SAMPLE / "meddoprof-training-set" / "task1", "*.txt", 100)
    assert len(texts) > 100
    for text in texts:
        assert tokenize(text) == _whole_text(text), text[:80]
        assert tokenize(text) == _whole_text(text), text[:80]  # from the remembered chunks
    assert "EE. UU." in words("la Embajada de EE. UU. en Madrid")  # a special case over a space


def test_chunk_by_chunk_equals_the_whole_text_on_the_real_corpora(real_data_dir):
    texts = _texts(real_data_dir / "profner" / "subtask-2" / "brat", "train/*.txt", 3000) + _texts(
        real_data_dir / "meddoprof" / "meddoprof-training-set" / "task1", "*.txt", 300)
    assert len(texts) > 3000
    for text in texts:
        if not tokenize_module._LONG_RUN.search(text):
            assert tokenize(text) == _whole_text(text), text[:80]


def test_a_chunk_taken_whole_without_spacy_is_one_spacy_keeps_whole():
    """``plain_word`` chunks skip spaCy's pass: every letter of Unicode that it admits, alone,
    between letters and at either end of a word, is kept whole by the pass; the letters that
    are emoji (``ℹ``) and the special cases of letters alone (``pal``) are not admitted."""
    letters = [chr(i) for i in range(0x110000) if chr(i).isalpha()]
    plain = [ch for ch in letters if tokenize_module.plain_word(ch)]
    assert "ℹ" in letters and "ℹ" not in plain and len(plain) > 100_000
    assert not tokenize_module.plain_word("pal") and words("pal") == ["pa", "l"]
    for form in ("{}", "a{}b", "ab{}", "{}ab"):
        chunks = [form.format(ch) for ch in plain]
        joined, first, whole = " ".join(chunks), 0, []
        for chunk in chunks:
            whole.append((first, first + len(chunk)))
            first += len(chunk) + 1
        assert tokenize_module._doc_spans(joined) == whole


def test_the_chunk_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(tokenize_module, "CHUNKS", 3)
    monkeypatch.setattr(tokenize_module, "_chunk_spans", {})
    assert [t.text for t in tokenize("uno dos tres cuatro, cinco")] == [
        "uno", "dos", "tres", "cuatro", ",", "cinco"]
    assert 1 <= len(tokenize_module._chunk_spans) <= 3


def test_new_chunks_split_in_one_pass_do_not_join_into_a_special_case(monkeypatch):
    """A text's new chunks go to spaCy in one pass, joined by spaces: "EE." and "UU." must not
    become the special case "EE. UU." that they never were in the text."""
    monkeypatch.setattr(tokenize_module, "_chunk_spans", {})
    tokenize("x")
    assert [t.text for t in tokenize("x EE. x UU.")] == ["x", "EE", ".", "x", "UU", "."]
    assert tokenize("x EE. x UU.") == _whole_text("x EE. x UU.")
