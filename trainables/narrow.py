"""Two-stage NAS: narrow a wide search space around the best trials of a finished sweep.

Stage 1 sweeps a wide space (``rnn_wide.yaml``); :func:`narrow_space` keeps, of the top
quantile of its trials (by their best epoch's metric):

- categorical choices (``choice``) and conditional branches (``branch``): only the options the
  top trials picked (a single one becomes a constant); a branch's own sub-space is narrowed on
  the top trials that took that branch, and dropped with the branch otherwise;
- numeric ranges: the top trials' [min, max], widened by ``margin`` of the original width (in
  log space for log distributions), clipped to the original bounds, kept on the ``q`` grid.

The result is written as a new search-space YAML file (``narrowed_from`` names the run) that
``profner tune`` runs as stage 2.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from search_spaces import loader
from search_spaces.dists import NUMERIC
from trainables import sweeps, tracking

MISSING = object()


def top_trials(trials: list[tuple[dict[str, Any], float]], mode: str,
               top_fraction: float) -> list[dict[str, Any]]:
    """Sampled configs of the best ``top_fraction`` of ``(config, metric)`` pairs (at least 2)."""
    scored = [(c, v) for c, v in trials if v is not None and math.isfinite(v)]
    if not scored:
        raise LookupError("no finished trial with a finite metric to narrow from")
    scored.sort(key=lambda cv: cv[1], reverse=(mode == "max"))
    keep = max(min(2, len(scored)), math.ceil(len(scored) * top_fraction))
    return [c for c, _ in scored[:keep]]


def narrow_space(space: loader.SearchSpace, top: list[dict[str, Any]], run: str,
                 margin: float = 0.1) -> loader.SearchSpace:
    """A new search space narrowed around ``top`` (sampled configs of the best trials)."""
    spec = _narrow_mapping(space.spec, top, margin)
    narrowed = copy.copy(space)
    narrowed.spec = spec
    narrowed.study = f"{space.study}_narrow" if not space.study.endswith("_narrow") else space.study
    narrowed.narrowed_from = run
    narrowed.description = (f"Narrowed from {space.study} run {run} around its top "
                            f"{len(top)} trials.")
    return narrowed


def _get(config: dict[str, Any], key: str) -> Any:
    return config.get(key, MISSING) if isinstance(config, dict) else MISSING


def _narrow_mapping(node: dict, configs: list[dict], margin: float) -> dict:
    out: dict[str, Any] = {}
    for key, value in node.items():
        values = [v for v in (_get(c, key) for c in configs) if v is not MISSING]
        if isinstance(value, dict) and value.get("dist") == "branch":
            options = {}
            for option, subtree in value["options"].items():
                takers = [c for c in configs if _get(c, key) == option]
                if takers:
                    options[option] = _narrow_mapping(subtree, takers, margin) if subtree else None
            if len(options) == 1:
                (option, subtree), = options.items()
                out[key] = option
                out.update(subtree or {})
            else:
                out[key] = {"dist": "branch", "options": options or value["options"]}
        elif isinstance(value, dict) and "dist" in value:
            out[key] = _narrow_dist(value, values, margin)
        elif isinstance(value, dict):
            out[key] = _narrow_mapping(value, [_get(c, key) for c in configs
                                               if isinstance(_get(c, key), dict)], margin)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _narrow_dist(node: dict, values: list[Any], margin: float) -> Any:
    kind = node["dist"]
    if not values:
        return copy.deepcopy(node)
    if kind == "choice":
        kept = [o for o in node["options"] if any(_same(o, v) for v in values)]
        if len(kept) == 1:
            return copy.deepcopy(kept[0])
        return {"dist": "choice", "options": copy.deepcopy(kept or node["options"])}
    assert kind in NUMERIC, kind
    log = kind in ("loguniform", "qloguniform")
    low, high = float(node["low"]), float(node["high"])
    values = [min(max(float(v), low), high) for v in values]  # the file may have changed since
    scale = math.log if log else (lambda x: x)
    unscale = math.exp if log else (lambda x: x)
    width = scale(high) - scale(low)
    lo = max(scale(low), scale(min(values)) - margin * width)
    hi = min(scale(high), scale(max(values)) + margin * width)
    new_low, new_high = unscale(lo), unscale(hi)
    if "q" in node:
        q = node["q"]
        new_low = max(low, math.floor(new_low / q) * q)
        new_high = min(high, math.ceil(new_high / q) * q)
    if kind == "randint":
        new_low, new_high = math.floor(new_low), min(int(high), math.floor(new_high) + 1)
    integer = all(isinstance(node[k], int) for k in ("low", "high"))
    if integer:
        new_low, new_high = int(round(new_low)), int(round(new_high))
    else:
        new_low, new_high = float(f"{new_low:.6g}"), float(f"{new_high:.6g}")
    if not new_low < new_high:  # every top trial had the same value: keep it as a constant
        return int(round(values[0])) if integer else values[0]
    return {"dist": kind, "low": new_low, "high": new_high,
            **({"q": node["q"]} if "q" in node else {})}


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def trials_of_run(run: str, tracking_uri: str | None = None,
                  storage: str = "ray_results") -> tuple[dict[str, Any], list[tuple[dict, float]]]:
    """(sweep info, [(sampled config, best metric)]) of a finished sweep.

    ``run``: a sweep dir (holds profner_sweep.json), a sweep name under ``storage``, or an
    MLflow parent run id (looked up in ``tracking_uri``).
    """
    info = sweeps.find_sweep(run, tracking_uri, storage)
    metric = info["metric"]
    runs = tracking.child_runs(info["tracking_uri"], info["experiment_id"], info["parent_run_id"])
    trials = []
    for child in runs:
        if child.info.status != "FINISHED" or tracking.CONFIG_TAG not in child.data.tags:
            continue
        config = json.loads(child.data.tags[tracking.CONFIG_TAG])
        trials.append((config, child.data.metrics.get(f"best_{metric}")))
    return info, trials


def narrow_from_run(run: str, space_path: str | None = None, out: Path | None = None,
                    storage: str = "ray_results", top_fraction: float = 0.25,
                    tracking_uri: str | None = None, margin: float = 0.1) -> Path:
    """Write the narrowed space of a finished sweep; returns the new YAML file's path.

    ``space_path``: the wide space the run used (default: the one recorded with the run).
    """
    info, trials = trials_of_run(run, tracking_uri, storage)
    space = loader.load(space_path or info["space_path"])
    top = top_trials(trials, info.get("mode", "max"), top_fraction)
    narrowed = narrow_space(space, top, info["parent_run_id"], margin)
    out = out or Path(storage) / f"{narrowed.study}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    # A narrowed file lives outside the package: point ``base`` at the shipped config by name,
    # or at an absolute path when the wide space used a file.
    base = Path(space.base)
    if base.suffix in (".yaml", ".yml") and not base.is_absolute():
        narrowed.base = str((space.path.parent / base).resolve())
    loader.save(narrowed, out)
    loader.load(out)  # the written file must load back
    return out.resolve()
