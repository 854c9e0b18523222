"""``profner register MODEL_DIR``: a trained model dir as an MLflow run and a registered version.

For a model dir that ``profner train`` (or ``refit``) wrote, and for an ensemble dir:

- one run in the experiment (default ``profner-models``) named after the dir: the config as
  params, the saved metrics as metrics and the unseen-text estimate as ``estimate_<metric>``,
  the dir, its kind and its source as tags;
- an ensemble's run also logs its members' mean and spread (``members_mean_<metric>``,
  ``members_std_<metric>``) and has one child run per member (its config, its own metrics and
  estimate, its weight, its dir), listed in the parent's ``profner.members`` tag;
- the dir is logged as that run's MLflow Model (pyfunc: ``trainables.mlflow_model``) and
  registered as a new version of ``name`` (default ``profner-<dir name>``), so
  ``profner serve models:/NAME/VERSION`` and ``mlflow.pyfunc.load_model`` take it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profner_models import __version__
from trainables import models, tracking

DEFAULT_EXPERIMENT = "profner-models"
MEMBERS_TAG = "profner.members"


@dataclass
class Registered:
    run_id: str
    member_run_ids: list[str]
    name: str
    version: str
    links: dict[str, str]


def register(model_dir: Path, name: str | None = None, tracking_uri: str | None = None,
             experiment: str = DEFAULT_EXPERIMENT) -> Registered:
    """Log ``model_dir`` (a model or an ensemble dir) as a run and register it (module doc)."""
    model_dir = Path(model_dir).resolve()
    meta = _read_json(model_dir / "meta.json", "a model dir")
    ensemble = (_read_json(model_dir / "ensemble.json", "an ensemble dir")
                if (model_dir / "ensemble.json").is_file() else None)
    tracking_uri = tracking_uri or tracking.default_tracking_uri()
    name = name or f"profner-{model_dir.name}"
    experiment_id = tracking.ensure_experiment(tracking_uri, experiment)
    client = tracking.client(tracking_uri)
    kind = "ensemble" if ensemble else "model"
    tags = {tracking.KIND_TAG: kind, "model_dir": str(model_dir), "git_commit":
            tracking.git_commit(), "profner_version": str(meta.get("version", __version__))}
    run = client.create_run(experiment_id, run_name=model_dir.name, tags=tags)
    run_id = run.info.run_id
    if ensemble:
        tracking.log_params(client, run_id, {k: v for k, v in ensemble.items() if k != "members"})
        members = [_log_member(client, experiment_id, run_id, model_dir / member, index, weight)
                   for index, (member, weight) in enumerate(zip(ensemble["members"],
                                                                ensemble["weights"]))]
        client.set_tag(run_id, MEMBERS_TAG, json.dumps(members))
    else:
        tracking.log_params(client, run_id, _read_json(model_dir / "config.json", "a model dir"))
        members = []
    _log_figures(client, run_id, meta)
    version = models.register_model_dir(client, run_id, model_dir, name,
                                        {"model_dir": str(model_dir), "kind": kind})
    client.set_terminated(run_id, "FINISHED")
    return Registered(run_id, members, name, version,
                      tracking.ui_links(tracking_uri, experiment_id, run_id, saved_view=False))


def _log_member(client, experiment_id: str, parent: str, member_dir: Path, index: int,
                weight: float) -> str:
    """A member's child run under the ensemble's run: its id."""
    meta = _read_json(member_dir / "meta.json", "a member's model dir")
    run = client.create_run(experiment_id, run_name=f"member-{index}", tags={
        tracking.PARENT_TAG: parent, tracking.KIND_TAG: "member", "model_dir": str(member_dir),
        "member": str(index)})
    run_id = run.info.run_id
    tracking.log_params(client, run_id, _read_json(member_dir / "config.json", "a model dir"))
    client.log_metric(run_id, "weight", float(weight))
    _log_figures(client, run_id, meta)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _log_figures(client, run_id: str, meta: dict[str, Any]) -> None:
    """The saved metrics, the estimate (``estimate_*``) and, for an ensemble, its members'
    mean and spread on that estimate's dev set."""
    estimate = (meta.get("unseen") or {}).get("estimate") or {}
    figures = {**tracking.numeric(meta.get("metrics")),
               **{f"estimate_{k}": v for k, v in tracking.numeric(estimate.get("metrics")).items()}}
    for stat in ("mean", "std"):
        figures.update({f"members_{stat}_{k}": v
                        for k, v in tracking.numeric((estimate.get("members") or {}).get(stat)).items()})
    for key, value in figures.items():
        client.log_metric(run_id, key, value)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {path.parent} is not {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
