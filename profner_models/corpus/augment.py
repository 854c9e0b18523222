"""Optional training-data augmentation for rare entity types (MEDDOPROF ACTIVIDAD).

A candidate is a copy of a training document where one span of an augmented type is replaced
by another surface text of the same type taken from the training spans (its CLASS and NORM
come along, so the labels stay coherent). A language model scores each candidate on a window
of words around the substitution and only the most fluent fraction is kept::

    data:
      augment:                # absent / null / false: off (the default)
        types: [ACTIVIDAD]    # entity types whose spans are substituted
        copies: 3             # distinct candidates per document holding such a span
        keep: 0.5             # fraction of all candidates kept, best LM score first
        seed: 13              # default: training.seed, else 13
        window: 10            # words of context scored on either side of the filler
        scorer: {name: ngram.v1, order: 3}

Score = mean natural-log probability per token of the filler's first token and of the
``window`` words after the filler, given the ``window`` words before it and the filler. The
tokens inside the filler are context, not scored: a training span is fluent by construction,
and an n-gram model fitted on the same texts has seen it verbatim, so scoring them ranked
candidates by filler length instead of fit (MEDDOPROF ACTIVIDAD, 192 candidates: correlation
of the score with the filler's word count 0.55 when they are scored, 0.09 when not; 3 of the
top 4 were then the one 11-word filler). Length-normalising keeps the number of right-context
tokens (fewer near the end of a document) from mattering.

Scorers are registered in :data:`scorers` (``factory(block, docs=train_docs) -> Scorer``):

- ``ngram`` (default): a word n-gram model fitted on the training texts (lower-cased
  ``\\w+`` words and single punctuation marks), ``nltk.lm.WittenBellInterpolated``. Measured on
  MEDDOPROF train (1,176 docs, 843k words, order 3, one core): fitting takes ~11 s for every
  nltk model; scoring one word takes 0.1 ms with Witten-Bell or Laplace but 100 ms with
  ``KneserNeyInterpolated`` (it sums continuation counts over the vocabulary on every call),
  i.e. ~8 min for 200 candidates, so Kneser-Ney is out. Laplace (add-one over a 30k-word
  vocabulary) flattens every unseen trigram to nearly the same tiny probability; Witten-Bell
  interpolation backs off by how many distinct words follow a context, which is proper
  smoothing at Laplace's speed. A word the model never saw (a filler glued to a neighbouring
  word) gets the probability 1 / (tokens + vocabulary) instead of Witten-Bell's zero.
- ``causal_lm``: a Hugging Face causal LM, ``{name: causal_lm, model: DeepESP/gpt2-spanish}``
  (a hub name or a local directory); ``transformers`` is imported only when it is chosen.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pydantic import Field

from profner_models.config import ConfigError, Schema, check
from profner_models.documents import Document, Span
from profner_models.registry import Registry

__all__ = ["Candidate", "Scorer", "augment_documents", "scored_candidates", "scorers"]

_WORD = re.compile(r"\w+|[^\w\s]")


class Scorer(Protocol):
    def score(self, left: str, filler: str, right: str) -> float:
        """Mean log-probability per token of the first token of ``filler`` and the tokens of
        ``right``, each given all the text before it (higher: fits its context better)."""


scorers: Registry[Scorer] = Registry("augmentation scorer")


@dataclass(frozen=True)
class Candidate:
    """One substitution: the augmented copy, its new span, the scored context and the verdict."""

    document: Document
    span: Span
    context: tuple[str, str, str]  # (left, filler, right) as scored
    score: float
    kept: bool


def augment_documents(docs: list[Document], config: dict) -> list[Document]:
    """``docs`` plus the kept substitution candidates (``config['data']['augment']``), or
    ``docs`` itself when augmentation is off. ``docs`` must have passed the span policy."""
    kept = [c.document for c in scored_candidates(docs, config) if c.kept]
    return docs + kept if kept else docs


def scored_candidates(docs: list[Document], config: dict) -> list[Candidate]:
    """Every candidate of ``config['data']['augment']`` in the order they were made, with its
    LM score and whether it is among the kept top fraction ([] when augmentation is off)."""
    block = config.get("data", {}).get("augment")
    if not block:
        return []
    options = _validate(block, docs, config)
    pool = _filler_pool(docs, options["types"])
    rng = random.Random(options["seed"])
    candidates = [cand for doc in docs for cand in _candidates(doc, pool, options["copies"], rng)]
    if not candidates:
        return []
    scorer = scorers.build(options["scorer"], docs=docs)
    contexts = [_context(doc, span, options["window"]) for doc, span in candidates]
    scores = [scorer.score(*context) for context in contexts]
    n_keep = max(1, round(options["keep"] * len(candidates)))
    best = set(sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:n_keep])
    return [Candidate(doc, span, context, score, i in best)
            for i, ((doc, span), context, score) in enumerate(zip(candidates, contexts, scores))]


class AugmentConfig(Schema):
    """``data.augment`` (module docstring)."""

    types: list[str] = Field(min_length=1)
    copies: int = Field(3, ge=1)
    keep: float = Field(0.5, gt=0.0, le=1.0)
    seed: int | None = None
    """None: ``training.seed``."""
    window: int = Field(10, ge=0)
    scorer: dict = Field(default_factory=lambda: {"name": "ngram.v1", "order": 3})


def _validate(block: Any, docs: list[Document], config: dict) -> dict:
    """The augment options, checked and with defaults filled in (``ConfigError`` naming the
    key); the types must be present in the training spans."""
    if not isinstance(block, dict):
        raise ConfigError(f"data.augment: expected a mapping, null or false, got {block!r}")
    options = check(AugmentConfig, block, "data.augment")
    present = {span.type for doc in docs for span in doc.spans}
    missing = sorted(set(options["types"]) - present)
    if missing:
        raise ConfigError(f"data.augment.types: no training span has type {missing} "
                          f"(present: {sorted(present)})")
    if options["seed"] is None:
        options["seed"] = config.get("training", {}).get("seed", 13)
    options["scorer"] = scorers.check(options["scorer"], "data.augment.scorer")
    return options


def _filler_pool(docs: list[Document], types: list[str]) -> dict[str, list[Span]]:
    """Per type, one span per distinct surface text (its first occurrence: cls and code)."""
    pool: dict[str, dict[str, Span]] = {t: {} for t in types}
    for doc in docs:
        for span in doc.spans:
            if span.type in pool:
                pool[span.type].setdefault(span.text, span)
    return {t: list(fillers.values()) for t, fillers in pool.items()}


def _candidates(doc: Document, pool: dict[str, list[Span]], copies: int,
                rng: random.Random) -> list[tuple[Document, Span]]:
    """Up to ``copies`` distinct (span, filler) substitutions of ``doc``: (new doc, new span).

    A span that overlaps another (``overlap: keep_all``) is never replaced: the other span's
    offsets would have no correct shift."""
    pairs = [(span, filler)
             for span in doc.spans if span.type in pool and not _overlaps_other(span, doc.spans)
             for filler in pool[span.type] if filler.text != span.text]
    chosen = rng.sample(pairs, min(copies, len(pairs)))
    return [_substitute(doc, span, filler, f"{doc.id}#aug{n}") for n, (span, filler) in enumerate(chosen)]


def _overlaps_other(span: Span, spans: list[Span]) -> bool:
    return any(other is not span and other.start < span.end and span.start < other.end for other in spans)


def _substitute(doc: Document, old: Span, filler: Span, new_id: str) -> tuple[Document, Span]:
    """A copy of ``doc`` with ``old`` replaced by ``filler``'s text, type, cls and code; spans
    after it move by the length difference. ValueError if any span misses its text."""
    surface = _case_like(filler.text, old.text)
    text = doc.text[:old.start] + surface + doc.text[old.end:]
    shift = len(surface) - (old.end - old.start)
    new = replace(filler, start=old.start, end=old.start + len(surface), text=surface)
    spans = [new if span is old else span if span.end <= old.start
             else replace(span, start=span.start + shift, end=span.end + shift)
             for span in doc.spans]
    for span in spans:
        if text[span.start:span.end] != span.text:
            raise ValueError(f"augmented document {new_id!r}: span {span.start}-{span.end} {span.type} "
                             f"reads {text[span.start:span.end]!r}, expected {span.text!r}")
    return replace(doc, id=new_id, text=text, spans=spans), new


def _case_like(text: str, like: str) -> str:
    """``text`` with its first letter in the case of ``like``'s ("tras le gusta hacer
    deporte", not "tras Le gusta ..."): the substituted span keeps its place's capitalisation."""
    if text[:1].isalpha() and like[:1].isalpha():
        return (text[0].upper() if like[0].isupper() else text[0].lower()) + text[1:]
    return text


def _context(doc: Document, span: Span, window: int) -> tuple[str, str, str]:
    """(left, filler, right): up to ``window`` words before ``span``, the span, up to ``window``
    words after it. Whitespace before the span goes with the filler (sub-word tokenizers such as
    GPT-2's mark a word's leading space on the word itself)."""
    words = list(_WORD.finditer(doc.text))
    before = [m for m in words if m.end() <= span.start][-window:] if window else []
    after = [m for m in words if m.start() >= span.end][:window] if window else []
    left_start = before[0].start() if before else span.start
    left = doc.text[left_start:span.start].rstrip()
    right_end = after[-1].end() if after else span.end
    return left, doc.text[left_start + len(left):span.end], doc.text[span.end:right_end]


class NgramScorer:
    """Witten-Bell interpolated word n-gram model (nltk) fitted on the training texts."""

    def __init__(self, texts: list[str], order: int) -> None:
        from nltk.lm import WittenBellInterpolated  # lazy: only when augmenting (~1 s)
        from nltk.lm.preprocessing import padded_everygram_pipeline

        self.order = order
        ngrams, vocabulary = padded_everygram_pipeline(order, [self.words(t) for t in texts])
        self.model = WittenBellInterpolated(order)
        self.model.fit(ngrams, vocabulary)
        unseen = 1 / (self.model.counts.unigrams.N() + len(self.model.vocab))
        self.unseen_log2 = math.log2(unseen)

    @staticmethod
    def words(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def score(self, left: str, filler: str, right: str) -> float:
        history = ["<s>"] * (self.order - 1) + self.words(left)
        filler_words = self.words(filler)
        log2s = []
        for i, word in enumerate(filler_words + self.words(right)):
            if i == 0 or i >= len(filler_words):
                log2s.append(max(self.model.logscore(word, history[len(history) - self.order + 1:]), self.unseen_log2))
            history.append(word)
        return sum(log2s) * math.log(2) / max(len(log2s), 1)


class NgramConfig(Schema):
    order: int = Field(3, ge=1)


class CausalLMConfig(Schema):
    model: str = "DeepESP/gpt2-spanish"
    """A Hugging Face causal LM: hub name or local dir."""


@scorers.register("ngram.v1", schema=NgramConfig)
def build_ngram(block: dict, docs: list[Document]) -> NgramScorer:
    return NgramScorer([doc.text for doc in docs], block["order"])


class CausalLMScorer:
    """A Hugging Face causal LM scoring sub-word tokens (see :class:`Scorer`)."""

    def __init__(self, model_name: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # lazy: seconds to import

        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForCausalLM.from_pretrained(model_name).eval()
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        if start is None:
            raise ValueError(f"data.augment.scorer.model {model_name!r}: the tokenizer has no BOS/EOS token "
                             "to condition the first word on")
        self.start = start

    def score(self, left: str, filler: str, right: str) -> float:
        import torch  # lazy: only this scorer needs it (corpus reading stays torch-free)

        left_ids, filler_ids, right_ids = (self.tokenizer(text, add_special_tokens=False)["input_ids"]
                                           for text in (left, filler, right))
        ids = [self.start] + left_ids + filler_ids + right_ids
        first = 1 + len(left_ids)
        positions = [first] + list(range(first + len(filler_ids), len(ids)))
        with torch.no_grad():
            logits = self.model(torch.tensor([ids])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return sum(logprobs[p - 1, ids[p]].item() for p in positions) / len(positions)


@scorers.register("causal_lm.v1", schema=CausalLMConfig)
def build_causal_lm(block: dict, docs: list[Document]) -> CausalLMScorer:
    return CausalLMScorer(block["model"])
