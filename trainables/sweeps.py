"""The sweep store: what a sweep keeps beside Tune's experiment dir (``<storage>/<name>/``).

``profner_sweep.json`` holds the study, the search-space file, the MLflow parent run, the
options, and after the sweep its best trial; ``find_sweep`` finds a sweep by dir, name or
MLflow parent run id (``profner refit``, ``--narrow-from``, ``serve sweep:``);
``snapshot_statuses`` reads the trial states Tune last saved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import ExperimentAnalysis

from trainables import tracking

if TYPE_CHECKING:  # the runner imports this module
    from trainables.runner import SweepOptions

SWEEP_FILE = "profner_sweep.json"


def sweep_dir_for(options: SweepOptions, study: str) -> Path:
    storage = Path(options.storage).expanduser().resolve()
    if options.name:
        return storage / options.name
    if options.resume:
        candidates = sorted(storage.glob(f"{study}-*/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise FileNotFoundError(f"--resume: no sweep of study {study!r} under {storage}")
        return candidates[-1].parent
    return storage / f"{study}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a profner sweep dir (no {SWEEP_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def find_sweep(run: str, tracking_uri: str | None, storage: str) -> dict[str, Any]:
    """The sweep info of ``run``: a sweep dir, a sweep name under ``storage``, or an MLflow
    parent run id (its sweep dir's info when reachable, else what the run's tags hold)."""

    for candidate in (Path(run), Path(storage) / run):
        if (candidate / SWEEP_FILE).exists():
            info = read_sweep_file(candidate)
            if tracking_uri:
                info["tracking_uri"] = tracking_uri
            return info
    uri = tracking_uri or tracking.default_tracking_uri()
    try:
        parent = tracking.client(uri).get_run(run)
    except Exception as error:  # mlflow raises its own exception types per store
        raise LookupError(f"{run}: neither a sweep dir nor an MLflow run in {uri} ({error})") from None
    tags = parent.data.tags
    sweep_dir = tags.get("sweep_dir")
    if sweep_dir and (Path(sweep_dir) / SWEEP_FILE).exists():
        info = read_sweep_file(Path(sweep_dir))
        info["tracking_uri"] = uri
        return info
    params = parent.data.params
    return {"study": tags.get("study"), "space_path": tags.get("search_space"),
            "metric": params.get("metric", "f1_7b"), "mode": params.get("mode", "max"),
            "tracking_uri": uri, "experiment_id": parent.info.experiment_id,
            "parent_run_id": run, "data_dir": None if params.get("data_dir") == "bundled sample"
            else params.get("data_dir"), "base": tags.get("base_config")}


def write_sweep_file(sweep_dir: Path, info: dict[str, Any]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")


def snapshot_statuses(sweep_dir: Path) -> dict[str, str]:
    """Trial id -> status as Tune last saved the experiment (``ExperimentAnalysis``). Tune
    writes one last snapshot before stopping on Ctrl-C, so trials it interrupted read RUNNING
    there, whereas the trials of the returned result grid read TERMINATED."""
    if not any(Path(sweep_dir).glob("experiment_state-*.json")):
        return {}
    return {trial.trial_id: str(trial.status) for trial in ExperimentAnalysis(str(sweep_dir)).trials}
