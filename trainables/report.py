"""HPO report plots for one sweep (matplotlib, Agg), saved in the sweep dir.

- ``hyperparameters.png``: one panel per hyperparameter, each trial a point at its value
  (x; log scale for log distributions) against its best metric (y), coloured by the metric,
  as the paper's Figure 1. Categorical values sit at their option's position.
- ``parallel_coordinates.png``: each trial a line across the hyperparameters (each axis scaled
  to its range, its lowest and highest value written at its ends), coloured by the metric.
- ``learning_curves.png``: the metric per epoch of every trial; a cross marks where ASHA stopped
  a trial, a circle a trial that ran to the end, a red x an errored trial.
- ``frontier.png``: the best metric against latency per tweet (p50, one at a time, 1 thread,
  measured by the trial at its best epoch), the Pareto-optimal trials joined.

``trials.csv`` (one row per trial) goes with them onto the sweep's parent run.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ray.tune.utils import flatten_dict  # noqa: E402

from search_spaces.dists import LOG_SCALE  # noqa: E402
from search_spaces.loader import SearchSpace, config_key  # noqa: E402
from trainables.results import ran_all_epochs  # noqa: E402

if TYPE_CHECKING:
    from ray.tune import ResultGrid


@dataclass
class TrialSummary:
    trial_id: str
    params: dict[str, Any]
    best: float
    epochs: list[int]
    values: list[float]
    status: str  # completed | stopped | error
    latency_ms: float = math.nan  # p50 per tweet at the best epoch (EpochReporter)
    parameters: float = math.nan
    duration_s: float = math.nan

    @property
    def best_epoch(self) -> int | None:
        finite = [(v, e) for v, e in zip(self.values, self.epochs) if math.isfinite(v)]
        return max(finite)[1] if finite else None


def summarise(results: ResultGrid, metric: str, mode: str) -> list[TrialSummary]:
    """One summary per trial of a Tune ``ResultGrid``."""
    trials = []
    for result in results:
        history = result.metrics_dataframe
        latency = parameters = math.nan
        if history is None or metric not in getattr(history, "columns", ()):
            epochs, values = [], []
        else:
            history = history.dropna(subset=[metric])
            epochs = [int(e) for e in history.get("epoch", history["training_iteration"])]
            values = [float(v) for v in history[metric]]
            if values:
                row = history.iloc[int(np.argmax(values) if mode == "max" else np.argmin(values))]
                latency = float(row.get("latency_ms_p50", math.nan))
                parameters = float(row.get("parameters", math.nan))
        best = (max(values) if mode == "max" else min(values)) if values else math.nan
        if result.error:
            status = "error"
        else:
            status = "completed" if ran_all_epochs(result.metrics) else "stopped"
        trials.append(TrialSummary(
            str(result.metrics.get("trial_id", Path(result.path).name)),
            flatten_dict(result.config or {}, delimiter="."), best, epochs, values, status,
            latency, parameters, float(result.metrics.get("time_total_s", math.nan))))
    return trials


def pareto(trials: list[TrialSummary], mode: str = "max") -> list[TrialSummary]:
    """The trials no other trial beats on both the metric and the latency (measured ones)."""
    measured = [t for t in trials if math.isfinite(t.best) and math.isfinite(t.latency_ms)]
    sign = 1.0 if mode == "max" else -1.0

    def dominates(a: TrialSummary, b: TrialSummary) -> bool:
        return (sign * a.best >= sign * b.best and a.latency_ms <= b.latency_ms
                and (sign * a.best > sign * b.best or a.latency_ms < b.latency_ms))

    return [t for t in measured if not any(dominates(o, t) for o in measured if o is not t)]


def write_trials_csv(trials: list[TrialSummary], metric: str, path: Path) -> Path:
    """One row per trial: id, status, best metric and epoch, epochs run, duration, latency,
    parameters, then every sampled hyperparameter."""
    keys = _sampled_keys(trials)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial_id", "stopped_by", f"best_{metric}", "best_epoch", "epochs_run",
                         "duration_s", "latency_ms_p50", "parameters", *keys])
        for t in trials:
            writer.writerow([t.trial_id, {"stopped": "scheduler"}.get(t.status, t.status),
                             _cell(t.best), t.best_epoch or "", len(t.epochs), _cell(t.duration_s),
                             _cell(t.latency_ms), _cell(t.parameters),
                             *[t.params.get(k, "") for k in keys]])
    return path


def _cell(value: float):
    return "" if not math.isfinite(value) else round(value, 6)


def write_report(results: ResultGrid, space: SearchSpace, metric: str, mode: str,
                 out_dir: Path) -> list[Path]:
    """Write the three PNGs into ``out_dir``; returns their paths."""
    trials = summarise(results, metric, mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_hyperparameters(trials, space, metric, out_dir / "hyperparameters.png"),
        plot_parallel(trials, space, metric, out_dir / "parallel_coordinates.png"),
        plot_curves(trials, metric, out_dir / "learning_curves.png"),
        plot_frontier(trials, metric, mode, out_dir / "frontier.png"),
    ]


def _sampled_keys(trials: list[TrialSummary]) -> list[str]:
    """Config keys whose value differs between trials (the hyperparameters that were searched)."""
    keys = sorted({k for t in trials for k in t.params})
    return [k for k in keys if len({repr(t.params.get(k)) for t in trials}) > 1]


def _log_keys(space: SearchSpace) -> set[str]:
    """Flattened config keys drawn from a log-scale distribution (branch options included)."""
    return {config_key(d.path) for d in space.distributions() if d.kind in LOG_SCALE}


def _axis_values(trials: list[TrialSummary], key: str):
    """Numeric positions for a key; categorical values get their option index and tick labels."""
    raw = [t.params.get(key) for t in trials]
    present = [v for v in raw if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return [math.nan if v is None else float(v) for v in raw], None
    labels = sorted({repr(v) for v in raw})
    return [float(labels.index(repr(v))) for v in raw], labels


def _axis_ends(values: np.ndarray, labels: list[str] | None) -> tuple[str, str]:
    """The values at the bottom and top of a parallel-coordinates axis."""
    if labels is not None:
        return labels[0][:12], labels[-1][:12]
    return f"{np.nanmin(values):.3g}", f"{np.nanmax(values):.3g}"


def _colour(trials: list[TrialSummary]):
    values = np.array([t.best for t in trials], dtype=float)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    norm = matplotlib.colors.Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
    return values, norm, plt.get_cmap("viridis")


def plot_hyperparameters(trials: list[TrialSummary], space: SearchSpace, metric: str,
                         path: Path) -> Path:
    keys = _sampled_keys(trials) or ["(none)"]
    log_keys = _log_keys(space)
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols + 1, 3.2 * rows + 0.6), squeeze=False,
                             layout="constrained")
    values, norm, cmap = _colour(trials)
    for ax, key in zip(axes.flat, keys):
        xs, labels = _axis_values(trials, key) if key != "(none)" else ([0.0] * len(trials), None)
        ax.scatter(xs, values, c=values, cmap=cmap, norm=norm, edgecolors="k", linewidths=0.4)
        ax.set_title(key, fontsize=9)
        ax.set_ylabel(metric, fontsize=8)
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
        elif key in log_keys:
            ax.set_xscale("log")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=metric)
    fig.suptitle(f"{space.study}: {len(trials)} trials, best {metric} per trial")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_parallel(trials: list[TrialSummary], space: SearchSpace, metric: str, path: Path) -> Path:
    keys = _sampled_keys(trials)
    log_keys = _log_keys(space)
    columns, ends = [], []
    for key in keys:
        xs, labels = _axis_values(trials, key)
        xs = np.array(xs, dtype=float)
        shown = xs
        if key in log_keys:
            xs = np.log10(np.where(xs > 0, xs, np.nan))
        low, high = np.nanmin(xs), np.nanmax(xs)
        columns.append((xs - low) / (high - low) if high > low else np.full_like(xs, 0.5))
        ends.append(_axis_ends(shown, labels))
    values, norm, cmap = _colour(trials)
    columns.append(np.array([norm(v) for v in values], dtype=float))
    ends.append((f"{norm.vmin:.3g}", f"{norm.vmax:.3g}"))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(columns)), 4))
    matrix = np.vstack(columns) if columns else np.zeros((1, len(trials)))
    for i, value in enumerate(values):
        ax.plot(range(matrix.shape[0]), matrix[:, i], color=cmap(norm(value)) if np.isfinite(value)
                else "lightgrey", alpha=0.8)
    ax.set_xticks(range(len(keys) + 1), [*keys, metric], rotation=30, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    for x, (bottom, top) in enumerate(ends):
        ax.axvline(x, color="grey", linewidth=0.5)
        ax.text(x, -0.06, bottom, ha="center", va="top", fontsize=6)
        ax.text(x, 1.06, top, ha="center", va="bottom", fontsize=6)
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    ax.set_title(f"{space.study}: parallel coordinates")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_frontier(trials: list[TrialSummary], metric: str, mode: str, path: Path) -> Path:
    """The metric against latency per tweet (p50, one at a time, 1 thread), Pareto-optimal
    trials marked and joined: what a faster model costs."""
    front = {t.trial_id for t in pareto(trials, mode)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    measured = [t for t in trials if math.isfinite(t.best) and math.isfinite(t.latency_ms)]
    rest = [t for t in measured if t.trial_id not in front]
    best = sorted((t for t in measured if t.trial_id in front), key=lambda t: t.latency_ms)
    ax.scatter([t.latency_ms for t in rest], [t.best for t in rest], color="grey", alpha=0.7,
               label="dominated")
    ax.plot([t.latency_ms for t in best], [t.best for t in best], "o-", color="crimson",
            label="Pareto-optimal")
    for t in best:
        ax.annotate(t.trial_id[-8:], (t.latency_ms, t.best), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("latency per tweet, p50 (ms, one at a time, 1 thread)")
    ax.set_ylabel(f"best {metric}")
    ax.set_title(f"{metric} against latency: {len(best)} of {len(measured)} trials on the front")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(trials: list[TrialSummary], metric: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    markers = {"stopped": ("x", "ASHA stopped"), "completed": ("o", "completed"),
               "error": ("X", "error")}
    seen = set()
    for trial in trials:
        if not trial.epochs:
            continue
        line, = ax.plot(trial.epochs, trial.values, alpha=0.7)
        marker, label = markers[trial.status]
        colour = "red" if trial.status == "error" else line.get_color()
        ax.scatter(trial.epochs[-1:], trial.values[-1:], marker=marker, color=colour, s=50,
                   label=None if trial.status in seen else label, zorder=3)
        seen.add(trial.status)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per epoch ({len(trials)} trials)")
    if seen:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
