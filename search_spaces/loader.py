"""Search-space YAML files -> hyperopt-native spaces whose samples are nested model configs.

A search-space file describes one study::

    study: rnn_wide                 # name used for the sweep, MLflow tags and reports
    base: rnn                       # shipped config (profner_models/configs/<name>.yaml) or a
                                    # path relative to this file; a trial's sample is merged over it
    metric: f1_7b                   # default metric and mode of `profner tune`
    mode: max
    space:                          # nested keys mirror the model config (docs/design.md)
      training:
        lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}
        batch_size: {dist: choice, options: [16, 32]}
        seed: 13                    # a plain value is a constant override
      model:
        backbone:
          cell:                     # conditional: the picked option is written at this key and
            dist: branch            # its sub-tree is merged into the enclosing mapping
            options:
              lstm: {hidden: {dist: qloguniform, low: 32, high: 256, q: 16}}
              gru: {hidden: {dist: qloguniform, low: 32, high: 192, q: 16}}

Distributions (a mapping holding a ``dist`` key):

========== ============================ ==================================================
dist       arguments                    samples
========== ============================ ==================================================
uniform    low, high                    float in [low, high]
loguniform low, high (> 0)              float, log-uniform in [low, high]
quniform   low, high, q                 round(uniform / q) * q; an int when all are ints
qloguniform low, high, q                round(loguniform / q) * q; an int when all are ints
randint    low, high                    int in [low, high) (upper bound excluded, as Tune's)
qrandint   low, high, q                 int multiple of q in [low, high] (bounds included)
choice     options (a list)             one of the options (any YAML value)
branch     options (value -> mapping)   the value; its mapping (or null) is merged into the
                                        enclosing mapping, so branch-specific keys only exist
                                        in trials that picked that branch
========== ============================ ==================================================

Every stochastic node gets a hyperopt label equal to its key path, and nodes inside a branch
carry the branch in their label (``model.backbone.cell=gru/hidden``), so the same key in two
branches never collides (hyperopt's ``DuplicateLabel``, stack-notes). Errors raise
:class:`SearchSpaceError` naming the file and the key path at fault.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from hyperopt import hp
from hyperopt.pyll import scope
from hyperopt.pyll.stochastic import sample as pyll_sample

from profner_models.config import ConfigError, deep_merge
from profner_models.tasks import validate
from search_spaces import SHIPPED_DIR, TRIAL_KEYS, shipped_spaces
from search_spaces.dists import SearchSpaceError, validate_mapping

TOP_LEVEL_KEYS = {"study", "description", "base", "metric", "mode", "space", "narrowed_from"}
CONFIG_SECTIONS = {"task", "data", "model", "training"}


@scope.define_if_new
def profner_merge_branches(static: dict, *branches: dict) -> dict:
    """Merge the sub-trees of the branches picked in one mapping into its static keys."""
    merged = dict(static)
    for branch in branches:
        merged.update(branch)
    return merged


@scope.define_if_new
def profner_round(value: float) -> float:
    """Drop the float noise of quantised samples (0.35000000000000003 -> 0.35)."""
    return round(float(value), 10)


@dataclass(frozen=True)
class Dist:
    """One distribution leaf of a parsed space (``path`` is its dotted key path)."""

    path: str
    kind: str
    args: dict[str, Any]

    @property
    def is_int(self) -> bool:
        if self.kind in ("randint", "qrandint"):
            return True
        if self.kind in ("quniform", "qloguniform"):
            return all(isinstance(self.args[k], int) for k in ("low", "high", "q"))
        return False


@dataclass
class SearchSpace:
    """A parsed search-space file."""

    path: Path
    study: str
    base: str
    metric: str | None
    mode: str | None
    spec: dict[str, Any]
    description: str = ""
    narrowed_from: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    def base_config(self) -> dict[str, Any]:
        """The model config that sampled trial configs are merged over."""
        return load_base_config(self.base, self.path.parent)

    def to_hyperopt(self) -> dict[str, Any]:
        """A hyperopt-native space (nested dict of pyll nodes) with distinct labels."""
        return _hyperopt_mapping(self.spec, prefix="", label_prefix="")

    def sample(self, seed: int = 0) -> dict[str, Any]:
        """One random trial config (the sampled part only), as HyperOptSearch would give."""
        return plain(pyll_sample(self.to_hyperopt(), rng=np.random.default_rng(seed)))

    def trial_config(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The full model config of a trial: its sampled values merged over the base config."""
        return deep_merge(self.base_config(), sampled)

    def distributions(self) -> list[Dist]:
        """Every distribution leaf, branch options included (depth first)."""
        return list(_iter_dists(self.spec, ""))

    def to_yaml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"study": self.study}
        if self.description:
            out["description"] = self.description
        out["base"] = self.base
        if self.narrowed_from:
            out["narrowed_from"] = self.narrowed_from
        if self.metric:
            out["metric"] = self.metric
        if self.mode:
            out["mode"] = self.mode
        out["space"] = self.spec
        return out


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped file for a bare study name such as ``smoke``."""
    path = Path(name_or_path)
    if path.exists():
        return path.resolve()
    shipped = SHIPPED_DIR / f"{path.name}.yaml" if path.suffix == "" else SHIPPED_DIR / path.name
    if len(path.parts) == 1 and shipped.exists():
        return shipped
    raise SearchSpaceError(
        f"{name_or_path}: no such search-space file (shipped: {', '.join(shipped_spaces())})"
    )


def load(name_or_path: str | Path) -> SearchSpace:
    """Read and validate a search-space file (or a shipped study name)."""
    path = resolve_space_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SearchSpaceError(f"{path.name}: not valid YAML: {error}") from None
    return parse(raw, path)


def parse(raw: Any, path: Path) -> SearchSpace:
    """Validate a loaded YAML document; ``path`` names the file in errors and anchors ``base``."""
    where = path.name
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{where}: the file must be a mapping with study, base and space")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise SearchSpaceError(
            f"{where}: {sorted(unknown)[0]}: unknown top-level key "
            f"(expected {', '.join(sorted(TOP_LEVEL_KEYS))})"
        )
    for key in ("study", "base", "space"):
        if key not in raw:
            raise SearchSpaceError(f"{where}: {key}: missing")
    if not isinstance(raw["study"], str) or not raw["study"]:
        raise SearchSpaceError(f"{where}: study: must be a non-empty string")
    if raw.get("mode") not in (None, "min", "max"):
        raise SearchSpaceError(f"{where}: mode: must be 'min' or 'max', got {raw['mode']!r}")
    spec = raw["space"]
    if not isinstance(spec, dict) or not spec:
        raise SearchSpaceError(f"{where}: space: must be a non-empty mapping")
    for key in spec:
        if key not in CONFIG_SECTIONS and key not in TRIAL_KEYS:
            raise SearchSpaceError(
                f"{where}: space.{key}: not a config section "
                f"({', '.join(sorted([*CONFIG_SECTIONS, *TRIAL_KEYS]))})"
            )
    validate_mapping(spec, "space", where)
    space = SearchSpace(
        path=path.resolve(),
        study=raw["study"],
        base=str(raw["base"]),
        metric=raw.get("metric"),
        mode=raw.get("mode"),
        spec=spec,
        description=raw.get("description", "") or "",
        narrowed_from=raw.get("narrowed_from"),
        raw=raw,
    )
    try:
        base = space.base_config()
    except (OSError, yaml.YAMLError) as error:
        raise SearchSpaceError(f"{where}: base: cannot read base config {space.base!r}: {error}") from None
    if not isinstance(base, dict):
        raise SearchSpaceError(f"{where}: base: {space.base!r} is not a config mapping")
    _check_samples(space, base, where)
    return space


SCHEMA_SAMPLES = 64


def _check_samples(space: SearchSpace, base: dict, where: str) -> None:
    """Trial configs sampled from the space, merged over the base, must pass the model schema
    (``tasks.validate``): a study cannot sample a key the model would ignore or a value it
    refuses. Seeded samples (every branch and choice shows up in 64 draws of a shipped study)."""
    for seed in range(SCHEMA_SAMPLES):
        trial = deep_merge(base, space.sample(seed))
        try:
            validate({k: v for k, v in trial.items() if k not in TRIAL_KEYS})
        except ConfigError as error:
            raise SearchSpaceError(f"{where}: a sampled trial config is refused: {error}") from None


def load_base_config(base: str, relative_to: Path) -> dict[str, Any]:
    """A shipped config name (``rnn``) or a YAML path relative to the space file."""
    candidate = Path(base)
    if not candidate.is_absolute():
        candidate = relative_to / candidate
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return yaml.safe_load(candidate.read_text(encoding="utf-8"))
    shipped = resources.files("profner_models") / "configs" / f"{base}.yaml"
    if shipped.is_file():
        return yaml.safe_load(shipped.read_text(encoding="utf-8"))
    raise OSError(f"neither {candidate} nor profner_models/configs/{base}.yaml exists")


def save(space: SearchSpace, path: Path) -> Path:
    """Write a space as YAML (used for narrowed spaces); the result loads back with :func:`load`."""
    path.write_text(yaml.safe_dump(space.to_yaml_dict(), sort_keys=False), encoding="utf-8")
    return path


# -- validation ---------------------------------------------------------------------------


# -- hyperopt conversion ----------------------------------------------------------------------


def _hyperopt_mapping(node: dict, prefix: str, label_prefix: str) -> Any:
    static: dict[str, Any] = {}
    branches: list[Any] = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        label = f"{label_prefix}{key}"
        if isinstance(value, dict) and value.get("dist") == "branch":
            options = []
            for option, subtree in value["options"].items():
                sub = _hyperopt_mapping(subtree or {}, "", f"{label}={option}/")
                options.append(scope.profner_merge_branches({key: option}, sub) if subtree else {key: option})
            branches.append(hp.choice(label, options))
        elif isinstance(value, dict) and "dist" in value:
            static[key] = _hyperopt_dist(label, value)
        elif isinstance(value, dict):
            static[key] = _hyperopt_mapping(value, f"{path}.", f"{label}.")
        else:
            static[key] = value
    if not branches:
        return static
    return scope.profner_merge_branches(static, *branches)


def _hyperopt_dist(label: str, node: dict) -> Any:
    kind = node["dist"]
    dist = Dist(label, kind, {k: v for k, v in node.items() if k != "dist"})
    a = dist.args
    if kind == "uniform":
        return scope.float(hp.uniform(label, a["low"], a["high"]))
    if kind == "loguniform":
        return scope.float(hp.loguniform(label, math.log(a["low"]), math.log(a["high"])))
    if kind == "quniform":
        expr = hp.quniform(label, a["low"], a["high"], a["q"])
    elif kind == "qloguniform":
        expr = hp.qloguniform(label, math.log(a["low"]), math.log(a["high"]), a["q"])
    elif kind == "randint":
        return scope.int(hp.randint(label, a["low"], a["high"]))
    elif kind == "qrandint":
        expr = hp.quniform(label, a["low"], a["high"], a["q"])
    else:  # choice
        return hp.choice(label, copy.deepcopy(a["options"]))
    return scope.int(expr) if dist.is_int else scope.profner_round(expr)


def _iter_dists(node: dict, prefix: str) -> Iterator[Dist]:
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "dist" in value:
            yield Dist(path, value["dist"], {k: v for k, v in value.items() if k != "dist"})
            if value["dist"] == "branch":
                for option, subtree in value["options"].items():
                    yield from _iter_dists(subtree or {}, f"{path}={option}/")
        elif isinstance(value, dict):
            yield from _iter_dists(value, f"{path}.")


# -- config helpers -------------------------------------------------------------------------


def config_key(dist_path: str) -> str:
    """The flattened config key a distribution fills: ``a.cell=gru/hidden`` -> ``a.hidden``."""
    *branches, leaf = dist_path.split("/")
    parts = [part.split("=")[0].rpartition(".")[0] for part in branches]
    return ".".join(p for p in [*parts, leaf] if p)


def plain(value: Any) -> Any:
    """Numpy scalars and tuples -> plain Python, so configs serialise to JSON/YAML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
