"""Word tokenisation for Spanish tweets and clinical cases.

spaCy's rule-based Spanish tokenizer (``spacy.blank("es")``) with rules added where the gold
span boundaries of the real corpora (ProfNER train, MEDDOPROF task1) fell inside a spaCy
token, or where a token mixed an emoji with a word. Each rule below says what it was added
for; ``tests/test_tokenize.py`` checks the examples and the real-corpus alignment.

What the stock tokenizer did, measured on 1,922 ProfNER + 2,778 MEDDOPROF gold spans (22 spans
had a boundary inside a token), and the fix:

- Punctuation glued between two words: ``médicos!#COVID19``, ``políticos?Y``,
  ``sanitarios"Han``, ``Guardia Civil.176``, ``educadora del cAS.en``: ``!?¡¿``, double quotes
  and guillemets become infixes anywhere inside a token; a period after two letters and before
  a lowercase letter or a digit becomes an infix (``EE.UU.`` and ``p.ej.`` stay
  whole: no lowercase letter after the period, or one letter before it).
- Punctuation glued to a word on either side, as new tweets have it (4 of 675 gold spans of
  2,000 unseen tweets lost a boundary, 0 of 1,856 in train): a period, colon, semicolon or bar
  opening a word (``.director``, ``:Hoy``); a run of ``.,;:…`` between a letter and a quote or
  bracket (``Basurero:"Hoy``, ``Ministro:«No``); ``;`` between letters; ``|`` anywhere.
- Hyphens joining words: ``médico-paciente``, ``paciente-examinador`` (Spanish spaCy drops the
  letter-hyphen-letter infix other languages have): restored, with U+2010/U+2011 as hyphens.
  A hyphen opening or closing a word (``-Ama de casa`` as a list item, ``‐Psicólogo``,
  ``enfermera- gestora``) is split off.
- ``MdF.`` at a sentence end: a period after lowercase + uppercase is a suffix.
- An orphan combining mark opening a word (`` ̈cantaor ̈``, U+0308 after a space) is a prefix.
- Hashtags: gold spans include the ``#`` (``#Empresarios``, 54 spans) and once exclude it
  (``#PoliciaNacional`` -> ``PoliciaNacional``): ``#`` is always its own token, also glued
  (``sesión.#COVID19,#Otro``). Mentions stay one token (``@guardiacivil``, 53 spans include
  the ``@``); punctuation glued before ``#``/``@`` is split off.
- Emoji: stock spaCy split skin tones, flags and ZWJ sequences into parts and left the
  variation selector U+FE0F glued to the next word (``️Retener``, 529 tokens in ProfNER).
  One emoji sequence (flag pair, keycap, pictograph + variation selector + skin tone + ZWJ
  continuations + tag characters) is now one token, split off words on either side.
- URLs and e-mail addresses stay whole (spaCy's ``url_match``), also when glued after an
  emoji; but a string with no ``://``, ``www.``, ``/`` or ``@`` is not taken for a URL: stock
  spaCy read ``cAS.en``, ``dinero.pero``, ``psiquiátrico.con`` (two sentences glued by a
  period) as domain names and kept them whole.
- HTML escapes left in tweets (``-&gt;``, ``R0&lt;1``) are tokens of their own.
- Glued commas and brackets (``covid-19,miles``, ``España(AISE``, ``NHS),la``) and invisible
  format characters (BOM glued to the first word, bidi isolates around mentions) are split off.

Whitespace (spaces, ``\\n``, runs of them) and invisible format characters are never tokens.

With these rules every gold boundary of both corpora falls on a token boundary except one
ProfNER ACTIVIDAD span annotated with a leading space (``" twitter@s"``). Speed:
``bench/tokenize_speed.py`` (an unseen tweet takes about 0.2 ms of CPU, one whose chunks were all
met before 0.02 ms: each whitespace-free chunk's tokens are remembered; hostile runs: ``--hostile``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Sequence

import regex
import spacy
from spacy.attrs import IDX, LENGTH
from spacy.lang.char_classes import ALPHA, ALPHA_LOWER, ALPHA_UPPER
from spacy.tokenizer import Tokenizer


class Token(NamedTuple):
    """A word: its text and character offsets into the original string (end exclusive)."""

    text: str
    start: int
    end: int


def _char_class(prop: str) -> str:
    """The code points (planes 0-1) with a Unicode property, as a stdlib-``re`` class body.

    `regex` (a transformers dependency) knows the emoji properties; the stdlib `re` does not,
    but spaCy's affix search runs several times per word, and there `re` is ~5x faster.
    """
    test = regex.compile(rf"\p{{{prop}}}").match
    body, start = [], None
    for cp in range(0x20001):
        inside = cp < 0x20000 and test(chr(cp)) is not None
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            body.append(f"{re.escape(chr(start))}-{re.escape(chr(cp - 1))}")
            start = None
    return "".join(body)


def _emoji_pattern() -> str:
    """One emoji as the user sees it: flag pair, keycap, pictograph with its variation
    selector, skin tone, ZWJ continuations and tag characters; or orphan parts of one."""
    modifier = _char_class("Emoji_Modifier")
    picto = rf"[{_char_class('Extended_Pictographic')}][\uFE0E\uFE0F]?[{modifier}]?"
    return (
        r"(?:[\U0001F1E6-\U0001F1FF]{2}"
        r"|[0-9#*]\uFE0F?\u20E3"
        rf"|{picto}[\U000E0020-\U000E007E]*\U000E007F?(?:\u200D{picto})*"
        rf"|[{modifier}\uFE0E\uFE0F\u200D\u20E3\U0001F1E6-\U0001F1FF]+)"
    )


_HYPHEN = r"(?:-|‐|‑|–|—|~)"

# Invisible format characters: BOM (16 MEDDOPROF files), bidi isolates around mentions
# (``\u2066@rtve\u2069`` in ProfNER), zero-width space, direction marks. Split off and dropped.
_INVISIBLE = "\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_INVISIBLE_RUN = re.compile(f"[{_INVISIBLE}]+")

# Tweets keep HTML escapes (``-&gt;``, ``R0&lt;1``, ``Value&amp;Bro``): one token each.
_HTML_ENTITY = r"&(?:gt|lt|amp|quot|apos|#[0-9]+);"


def _affix_rules(emoji: str) -> tuple[list[str], list[str], list[str]]:
    """Prefixes, suffixes and infixes added in front of spaCy's Spanish ones."""
    glued = [_HTML_ENTITY, emoji, f"[{_INVISIBLE}]+"]
    prefixes = glued + [
        "#",
        rf"[.;:|](?=[{ALPHA}#@])",  # .director  :Hoy  (new text: period/colon glued before a word)
        rf"{_HYPHEN}(?=[{ALPHA}])",
        r"[\u0300-\u036F]+",  # combining mark with no base letter before it
    ]
    suffixes = glued + [
        rf"(?<=[{ALPHA}]){_HYPHEN}",
        rf"(?<=[{ALPHA_LOWER}][{ALPHA_UPPER}])\.",  # MdF.
    ]
    infixes = glued + [
        rf"(?<=[{ALPHA}])[.,;:…]{{2,}}(?=[{ALPHA}])",  # hola,.director
        r",(?=[^0-9])",  # covid-19,miles  @el_pais,“Estamos  (3,5 stays whole)
        rf"(?<=[{ALPHA}])[(\[](?=\w)",  # España(AISE
        rf"(?<=\w)[)\]](?=[{ALPHA}.,;:])",  # NHS),la
        r"[!?¡¿]+",  # políticos?Y
        r"[\"“”«»„]",  # sanitarios"Han
        r"#(?=\w)",  # médicos!#COVID19
        r"[.,;:…]+(?=[#@])",  # sesión.#COVID19
        rf"(?<=[{ALPHA}])[.,;:…]+(?=[\"“”«»(\[])",  # Basurero:"Hoy  Ministro:«No  dijo."Hola
        rf"(?<=[{ALPHA}])[;:](?=')",  # señor:'hola
        rf"(?<=[{ALPHA}]);(?=[{ALPHA}])",  # fin;empieza
        r"\|",  # camarero|cocinero
        rf"(?<=[{ALPHA}][{ALPHA}])\.(?=[{ALPHA_LOWER}0-9])",  # cAS.en  Civil.176
        rf"(?<=[{ALPHA}]){_HYPHEN}(?=[{ALPHA}])",  # médico-paciente
    ]
    return prefixes, suffixes, infixes


_URL_EVIDENCE = re.compile(r"://|^www\.|[/@]", re.IGNORECASE)


def _url_matcher(stock_match: Callable[[str], Any]) -> Callable[[str], Any]:
    def url_match(string: str) -> Any:
        return stock_match(string) if _URL_EVIDENCE.search(string) else None

    return url_match


def _compile(pieces: list[str], anchor: str) -> re.Pattern:
    """Join pieces as spaCy's compile_{prefix,suffix,infix}_regex do."""
    template = {"prefix": "^{}", "suffix": "{}$", "infix": "{}"}[anchor]
    return re.compile("|".join(template.format(p) for p in pieces if p.strip()))


@lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The customised spaCy Spanish tokenizer, built once per process."""
    nlp = spacy.blank("es")
    # A word the vocab has not seen becomes a lexeme with ~20 attributes computed (shape, norm,
    # like_num, ...); none is read here (only offsets and lengths), so none is computed.
    nlp.vocab.lex_attr_getters = {}
    defaults = nlp.Defaults
    tokenizer = nlp.tokenizer
    prefixes, suffixes, infixes = _affix_rules(_emoji_pattern())
    tokenizer.prefix_search = _compile(prefixes + list(defaults.prefixes), "prefix").search
    tokenizer.suffix_search = _compile(suffixes + list(defaults.suffixes), "suffix").search
    tokenizer.infix_finditer = _compile(infixes + list(defaults.infixes), "infix").finditer
    tokenizer.url_match = _url_matcher(defaults.url_match)
    return tokenizer


# spaCy strips affixes one at a time and searches the rest of the chunk for each suffix, so a
# whitespace-free run costs time quadratic in its length (4,000 ``!`` took 2.7 s, holding the
# GIL). No run in the corpora is longer than 128 characters (URLs included); longer ones are
# tokenised in pieces of at most MAX_RUN characters, which keeps the work per character bounded.
MAX_RUN = 160
_LONG_RUN = re.compile(rf"[^\s{_INVISIBLE}]{{{MAX_RUN + 1},}}")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into words with character offsets; whitespace is not a token.

    Time is linear in the length of ``text`` whatever it holds (see ``MAX_RUN``)."""
    tokens, done = [], 0
    for run in _LONG_RUN.finditer(text):
        tokens += _tokenize_piece(text, done, run.start())
        for start in range(run.start(), run.end(), MAX_RUN):
            tokens += _tokenize_piece(text, start, min(start + MAX_RUN, run.end()))
        done = run.end()
    return tokens + _tokenize_piece(text, done, len(text))


# spaCy splits a text at whitespace and tokenises each whitespace-free chunk on its own (but
# for the few special cases that span a space, ``EE. UU.``); its cache of chunks stops taking
# new words once its vocabulary holds 10,000 lexemes (loading a model, whose gazetteer is
# tokenised then, takes it from 420 to 9,924), after which every chunk was re-split affix by
# affix (0.13 ms a tweet where a cached pass takes 0.02). The chunks' token offsets are kept
# here instead, up to CHUNKS of them (then the memo starts afresh).
CHUNKS = 100_000
_CHUNK = re.compile(r"\S+")
_chunk_spans: dict[str, tuple[tuple[int, int], ...]] = {}


def _tokenize_piece(text: str, start: int, end: int) -> list[Token]:
    """The tokens of ``text[start:end]``, with offsets into ``text``: chunk by chunk, or the
    piece at once where a special case spans a space."""
    if _spanning_rules().search(text, start, end):
        return _tokens(text, start, _doc_spans(text[start:end]))
    chunks = [(chunk.start(), chunk.group()) for chunk in _CHUNK.finditer(text, start, end)]
    spans = {chunk: _chunk_spans.get(chunk) for _, chunk in chunks}
    new = [chunk for chunk, found in spans.items() if found is None]
    if new:
        spans.update(_learn_chunks(new))
        if len(_chunk_spans) + len(new) > CHUNKS:
            _chunk_spans.clear()
        _chunk_spans.update((chunk, spans[chunk]) for chunk in new[:CHUNKS])
    tokens = []
    for first, chunk in chunks:
        tokens += _tokens(text, first, spans[chunk])
    return tokens


def _tokens(text: str, base: int, spans: Sequence[tuple[int, int]]) -> list[Token]:
    return [Token(text[base + first : base + last], base + first, base + last) for first, last in spans]


def _learn_chunks(chunks: list[str]) -> dict[str, tuple[tuple[int, int], ...]]:
    """The token spans of distinct whitespace-free ``chunks`` from one spaCy pass over them
    joined by spaces (spaCy tokenises each space-delimited chunk on its own; a pass per chunk
    cost ~30 us each, most of it the Doc's). A chunk of letters alone is one token without the
    pass (``plain_word``): half of a tweet's new chunks, whose affix searches cost ~0.1 ms."""
    learned = {chunk: ((0, len(chunk)),) for chunk in chunks if plain_word(chunk)}
    chunks = [chunk for chunk in chunks if chunk not in learned]
    return learned | _spacy_chunks(chunks) if chunks else learned


def plain_word(chunk: str) -> bool:
    """Whether spaCy's pass keeps ``chunk`` whole for want of anything its rules split: letters
    alone, no emoji among them (``ℹ`` is both), not a special case (``pal``, ``xD``)."""
    return chunk.isalpha() and chunk not in _special_cases() and not _emoji().search(chunk)


@lru_cache(maxsize=1)
def _special_cases() -> frozenset[str]:
    return frozenset(get_tokenizer().rules)


@lru_cache(maxsize=1)
def _emoji() -> re.Pattern:
    return re.compile(_emoji_pattern())


def _spacy_chunks(chunks: list[str]) -> dict[str, tuple[tuple[int, int], ...]]:
    """``_learn_chunks`` by spaCy's pass."""
    joined = " ".join(chunks)
    if _spanning_rules().search(joined):  # chunks that joined make a special case (``EE. UU.``)
        return {chunk: tuple(_doc_spans(chunk)) for chunk in chunks}
    spans = iter(_doc_spans(joined))
    span, first, learned = next(spans, None), 0, {}
    for chunk in chunks:
        mine, end = [], first + len(chunk)
        while span is not None and span[0] < end:
            mine.append((span[0] - first, span[1] - first))
            span = next(spans, None)
        learned[chunk] = tuple(mine)
        first = end + 1
    return learned


def _doc_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each token spaCy finds in ``text``, whitespace and invisible characters
    left out: read from the Doc's offset and length columns (a spaCy ``Token`` object per word
    cost a tenth of a batch's prediction time)."""
    return [(idx, idx + length)
            for idx, length in get_tokenizer()(text).to_array([IDX, LENGTH]).tolist()
            if not text[idx : idx + length].isspace()
            and not _INVISIBLE_RUN.fullmatch(text, idx, idx + length)]


@lru_cache(maxsize=1)
def _spanning_rules() -> re.Pattern:
    """Text a special case spanning whitespace may match (``EE. UU.``), any whitespace between
    its parts; a pattern that never matches when there is none."""
    parts = [r"\s+".join(map(re.escape, rule.split()))
             for rule in get_tokenizer().rules if len(rule.split()) > 1]
    return re.compile("|".join(parts) or r"(?!)")
