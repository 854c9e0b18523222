"""Ensembles: several trained models that predict as one model dir.

An ensemble dir holds its members as ordinary model dirs and says how to combine them::

    ensemble.json      {"format": 1, "task": "profner", "method": "posterior", "min_votes": null,
                        "members": ["members/0", "members/1", ...], "weights": [0.5, 0.25, ...],
                        "entity_threshold": 0.4, "roles": null | [null, ["classify"], ...]}
    members/<i>/       model dirs (each with its own meta.json and checksums)
    meta.json          written last: metrics, the estimate on unseen text, sha256 of ensemble.json

``Predictor``, ``profner predict``, ``profner serve`` and the MLflow pyfunc take it like any model
dir (``Predictor`` sees ``ensemble.json``). Two ways to combine (``method``):

- ``posterior``: every member's per-word tag probabilities (a CRF's marginals) and
  7a probability are averaged (weighted by each member's ``weight``: a system's seeds can share
  one system's weight; a member's ``roles`` can limit it to some outputs, e.g. ``[classify]``:
  its 7a probability counts, its tags do not); the tags are decoded from the averaged probabilities with the
  tag scheme's invalid moves forbidden (Viterbi over their logs), the 7a label is the averaged
  probability >= 0.5 (or, with ``label_from_entities``, any entity). Members may differ in
  architecture (System 1 and System 2) as long as they share the tag set. MEDDOPROF too: per
  window, the ``tag`` marginals and the ``cls`` head's CLASS masses averaged (roles ``tag`` /
  ``cls``), codes from the first member's NORM index (``tasks.meddoprof.predict_averaged``).
- ``vote`` (any task): each member predicts; a span (start, end, type) is kept when at least
  ``min_votes`` members predict it (default: a majority), overlaps resolved by votes then length;
  a MEDDOPROF span takes its members' most frequent class and code.

``profner train`` builds one from an ensemble config (members trained, then combined; the
held-out members' ensemble scored on dev is its estimate on unseen text); ``profner combine``
(``combine``) from model dirs already trained: seeds of one recipe, a sweep's top trials,
System 1 with System 2.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import Field

from profner_models import __version__, artifacts
from profner_models.config import ConfigError, Schema, check, deep_merge, load_config
from profner_models.digest import sha256
from profner_models.documents import Prediction, Span
from profner_models.models import TrainedModel
from profner_models.models.frozen import shared_states
from profner_models.tasks import task_of

ENSEMBLE_FILE, MEMBERS_DIR, FORMAT = "ensemble.json", "members", 1


class MemberConfig(Schema):
    """One member recipe: a model config (shipped name or path) and what to change in it."""

    config: str
    override: dict = Field(default_factory=dict)
    """Merged into the config (nested keys), e.g. ``{training: {seed: 14}}``."""
    weight: float = Field(1.0, gt=0)
    """Its share of the averaged probabilities (and of the votes)."""
    roles: list[str] | None = None
    """The head roles whose outputs it contributes (method posterior; None: every role), e.g.
    ``[classify]``: its 7a probability is averaged, its tags are not."""


class EnsembleConfig(Schema):
    """A config file whose ``ensemble`` block trains several members (``profner train``)."""

    method: Literal["posterior", "vote"] = "posterior"
    min_votes: int | None = Field(None, ge=1)
    entity_threshold: float = Field(0.5, gt=0, lt=1)
    """posterior: a word leaves O when its entity tags' averaged probability passes this (0.5:
    the most probable tags; F1 is best served below 0.5, at about half the F1 reached)."""
    members: list[MemberConfig] = Field(min_length=2)


def ensemble_block(config: dict) -> dict | None:
    """The checked ``ensemble`` block of a config, or None for a single model's config."""
    if "ensemble" not in config:
        return None
    return check(EnsembleConfig, config["ensemble"], "ensemble")


@dataclass
class Ensemble:
    """Members that agree on the task and the label sets, and how to combine them."""

    members: list[TrainedModel]
    method: str = "posterior"
    min_votes: int | None = None
    metrics: dict = field(default_factory=dict)
    weights: list[float] | None = None
    """Per member (None: equal); normalised to sum to 1."""
    entity_threshold: float = 0.5
    roles: list[list[str] | None] | None = None
    """Per member, the head roles whose outputs it contributes (None: every role); only
    ``posterior`` combines by role."""

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")
        weights = self.weights or [1.0] * len(self.members)
        if len(weights) != len(self.members) or min(weights) <= 0:
            raise ValueError(f"weights {weights}: one positive weight per member")
        self.weights = [w / sum(weights) for w in weights]
        first = self.members[0]
        for index, member in enumerate(self.members[1:], start=1):
            if member.config.get("task") != first.config.get("task") or member.labels != first.labels:
                raise ValueError(f"member {index}: its task or labels differ from member 0's "
                                 f"({member.config.get('task')}, {member.labels})")
        if self.roles is not None:
            self._check_roles(self.roles)

    def _check_roles(self, roles: list[list[str] | None]) -> None:
        known = set(self.members[0].labels)
        if len(roles) != len(self.members):
            raise ValueError(f"roles {roles}: one entry per member")
        if self.method != "posterior" and any(r is not None for r in roles):
            raise ValueError("roles: only method posterior combines the members' outputs by role")
        for index, chosen in enumerate(roles):
            if chosen is not None and (not chosen or set(chosen) - known):
                raise ValueError(f"member {index}: roles {chosen} must name some of the task's "
                                 f"head roles {sorted(known)}")
        for role in sorted(known):
            if not any(chosen is None or role in chosen for chosen in roles):
                raise ValueError(f"roles: no member contributes the head role {role!r}")

    def role_weights(self) -> dict[str, list[float]]:
        """Per head role, each member's share of its averaged outputs (0: not one of its roles);
        each role's shares sum to 1."""
        roles = self.roles or [None] * len(self.members)
        shares = {}
        for role in self.members[0].labels:
            raw = [w if chosen is None or role in chosen else 0.0
                   for w, chosen in zip(self.weights, roles)]
            shares[role] = [w / sum(raw) for w in raw]
        return shares

    @property
    def config(self) -> dict:
        """The first member's config: the task, the data block (types, scheme) all share."""
        return self.members[0].config

    @property
    def num_parameters(self) -> int:
        return sum(member.num_parameters for member in self.members)

    @property
    def resources(self) -> dict:
        """The first member's task resources (MEDDOPROF: whether there is a NORM index)."""
        return self.members[0].resources

    def word_status(self, words: Sequence[str]) -> list[int] | None:
        """Per word, the best status any member with a word vocabulary gives it (a word one
        member knows is not unknown to the ensemble); None when no member has one."""
        statuses = [s for m in self.members
                    if (s := m.network.backbone.word_status(words)) is not None]
        return [max(column) for column in zip(*statuses)] if statuses else None

    @property
    def votes_needed(self) -> int:
        return self.min_votes or len(self.members) // 2 + 1

    def predict(self, texts: Sequence[str], batch_size: int = 64,
                device: torch.device | None = None) -> list[Prediction]:
        task = task_of(self.config)
        with shared_states(m for member in self.members for m in member.network.modules()):
            if self.method == "posterior":
                return task.predict_averaged(self.members, self.role_weights(), texts, batch_size,
                                             device, self.entity_threshold)
            votes = [task.predict(member, texts, batch_size, device) for member in self.members]
        from_entities = bool(self.config["model"].get("label_from_entities", False))
        return [vote(list(found), self.weights, self.votes_needed / len(self.members),
                     from_entities) for found in zip(*votes)]


def vote(predictions: list[Prediction], weights: Sequence[float], needed: float,
         from_entities: bool) -> Prediction:
    """One text's members' predictions -> the kept spans (the members predicting one weigh at
    least ``needed``, a share of the weights, which sum to 1), the weighted mean probability,
    the label (mean >= 0.5, or any kept span with ``from_entities``)."""
    counts: Counter = Counter()
    for prediction, weight in zip(predictions, weights):
        for key in {span.key for span in prediction.entities}:
            counts[key] += weight
    kept: list[Span] = []
    for key, votes in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0] - kv[0][1])):
        if votes < needed - 1e-9 or any(key[0] < s.end and s.start < key[1] for s in kept):
            continue
        same = [s for p in predictions for s in p.entities if s.key == key]
        cls = Counter(s.cls for s in same).most_common(1)[0][0]
        code = Counter(s.code for s in same).most_common(1)[0][0]
        kept.append(Span(key[0], key[1], key[2], same[0].text, cls=cls, code=code))
    probability = sum(p.probability * w for p, w in zip(predictions, weights))
    head_label = int(probability >= 0.5)
    label = int(head_label or (from_entities and bool(kept)))
    return Prediction(label, probability, sorted(kept), head_label)


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def save(ensemble: Ensemble, out: str | Path, member_meta: Sequence[dict] | None = None,
         extra_meta: dict | None = None) -> Path:
    """Write ``ensemble`` as an ensemble dir: each member a model dir (with ``member_meta[i]``
    in its meta.json); ``meta.json`` last."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    names = []
    for index, member in enumerate(ensemble.members):
        artifacts.save(member, out / MEMBERS_DIR / str(index),
                       extra_meta=member_meta[index] if member_meta else None)
        names.append(f"{MEMBERS_DIR}/{index}")
    spec = {"format": FORMAT, "task": ensemble.config.get("task", "profner"),
            "method": ensemble.method, "min_votes": ensemble.min_votes, "members": names,
            "weights": ensemble.weights, "entity_threshold": ensemble.entity_threshold,
            "roles": ensemble.roles}
    (out / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    meta = {"format": FORMAT, "package": "profner-hpo", "version": __version__, "kind": "ensemble",
            "metrics": ensemble.metrics, "parameters": ensemble.num_parameters,
            "sha256": {ENSEMBLE_FILE: sha256(out / ENSEMBLE_FILE)}, **(extra_meta or {})}
    (out / artifacts.META).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    return out


def load(path: str | Path) -> Ensemble:
    """Read an ensemble dir (``ModelDirError`` naming the file at fault)."""
    path = Path(path)
    meta_path, spec_path = path / artifacts.META, path / ENSEMBLE_FILE
    if not meta_path.is_file():
        raise artifacts.ModelDirError(f"{meta_path}: missing (the ensemble's save was cut short)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise artifacts.ModelDirError(f"{path}: unreadable ensemble files ({error})") from error
    if meta.get("sha256", {}).get(ENSEMBLE_FILE) != sha256(spec_path):
        raise artifacts.ModelDirError(f"{spec_path}: SHA-256 differs from the one in meta.json")
    if spec.get("format") != FORMAT or spec.get("method") not in ("posterior", "vote"):
        raise artifacts.ModelDirError(f"{spec_path}: not an ensemble of this version "
                                      f"(format {spec.get('format')!r}, method {spec.get('method')!r})")
    members = [artifacts.load(path / name) for name in spec["members"]]
    try:
        return Ensemble(members, spec["method"], spec.get("min_votes"), meta.get("metrics") or {},
                        spec.get("weights"), spec.get("entity_threshold", 0.5), spec.get("roles"))
    except ValueError as error:
        raise artifacts.ModelDirError(f"{spec_path}: {error}") from None


def combine(model_dirs: Sequence[str | Path], method: str = "posterior",
            weights: Sequence[float] | None = None, entity_threshold: float = 0.5,
            min_votes: int | None = None, roles: Sequence[list[str] | None] | None = None,
            keep_states: bool = False) -> tuple[Ensemble, list[dict]]:
    """Trained model dirs as one ensemble, and each member's meta.json (its fit, its estimate);
    ``roles``: per member, the head roles it contributes (None: all); ``keep_states``: as
    ``artifacts.load``'s (to score on this machine's dev text).
    ``ModelDirError`` names a dir that is not a model dir (or is an ensemble dir); ``ValueError``
    one whose task or labels differ from the first's."""
    if len(model_dirs) < 2:
        raise ValueError("an ensemble needs at least two model dirs")
    members, metas = [], []
    for path in model_dirs:
        if is_ensemble_dir(path):
            raise artifacts.ModelDirError(f"{path}: an ensemble dir; give its members "
                                          f"({path}/{MEMBERS_DIR}/<i>) instead")
        members.append(artifacts.load(path, keep_states))
        metas.append(json.loads((Path(path) / artifacts.META).read_text(encoding="utf-8")))
    try:
        combined = Ensemble(members, method, min_votes, {}, list(weights) if weights else None,
                            entity_threshold, list(roles) if roles else None)
    except ValueError as error:
        named = ", ".join(f"member {i} = {path}" for i, path in enumerate(model_dirs))
        raise ValueError(f"{error} ({named})") from None
    return combined, metas


def member_config(block: dict, task: str | None, shared: dict | None = None) -> dict:
    """The full config of one member recipe: its ``override`` merged over its config, then
    ``shared`` (the ensemble config's blocks besides ``task`` and ``ensemble``, e.g. a
    ``--set training.epochs=2``: every member's)."""
    config = deep_merge(deep_merge(load_config(block["config"]), block.get("override") or {}),
                        shared or {})
    if task and config.get("task", "profner") != task:
        raise ConfigError(f"ensemble.members: {block['config']} is a {config.get('task')} config, "
                          f"the ensemble's task is {task}")
    return config
