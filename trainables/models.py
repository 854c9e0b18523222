"""A sweep's best trial as a model: exported as a model dir (with its provenance and its
estimate on unseen text), logged to MLflow as a pyfunc Model and registered; the F1-vs-latency
frontier exported the same way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from profner_models import __version__
from profner_models.training import RESUME_DIR
from trainables import report, tracking

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from ray.tune import ResultGrid


def export_model(checkpoint: Path, model_dir: Path, info: dict[str, Any], trial_id: str) -> Path:
    """Copy the best checkpoint (a model dir) to ``model_dir``, noting its source in meta.json."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(checkpoint, model_dir, ignore=shutil.ignore_patterns(RESUME_DIR))
    meta_path = model_dir / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    meta["source_run"] = {"sweep_run_id": info["parent_run_id"], "trial_id": trial_id,
                          "tracking_uri": info["tracking_uri"], "study": info["study"]}
    metrics = meta.get("metrics", {})
    meta["unseen"] = {"estimate": {
        "from": "dev split held out of this trial's vocabulary, vectors and index (the best of "
                "the sweep's trials on it, so somewhat optimistic: refit it with profner refit)",
        "epoch": int(meta.get("best_epoch", 0)), "dev_docs": int(metrics.get("dev_docs", 0)),
        "metrics": {k: v for k, v in metrics.items()
                    if k.startswith(("f1", "precision", "recall", "dev_un"))}}}
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return model_dir


def export_frontier(results: ResultGrid, trials: list[report.TrialSummary], mode: str, out: Path,
                    info: dict[str, Any]) -> Path:
    """The Pareto-optimal trials (metric vs latency) as model dirs ``out/<trial_id>``, and
    ``out/frontier.json`` listing them, fastest first."""
    front = sorted(report.pareto(trials, mode), key=lambda t: t.latency_ms)
    checkpoints = {str(r.metrics.get("trial_id")): r.checkpoint for r in results}
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    for trial in front:
        checkpoint = checkpoints.get(trial.trial_id)
        if checkpoint is None:
            continue
        export_model(Path(checkpoint.path), out / trial.trial_id, info, trial.trial_id)
        listing.append({"trial_id": trial.trial_id, "latency_ms_p50": trial.latency_ms,
                        "best": trial.best, "parameters": trial.parameters,
                        "model_dir": str(out / trial.trial_id)})
    (out / "frontier.json").write_text(json.dumps(listing, indent=1), encoding="utf-8")
    return out


def trial_run_id(tracking_uri: str, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:

    runs = tracking.client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}' and "
                                       f"tags.`{tracking.TRIAL_TAG}` = '{trial_id}'", max_results=1)
    return runs[0].info.run_id if runs else None


def log_best_model(mlflow_client: MlflowClient, info: dict[str, Any], checkpoint: Path, trial_id: str,
                   registered_name: str) -> str:
    """Log the best trial's model dir to its run and the parent; register a model version."""
    parent = info["parent_run_id"]
    run_id = trial_run_id(info["tracking_uri"], info["experiment_id"], parent, trial_id) or parent
    if run_id != parent:
        mlflow_client.log_artifacts(parent, str(checkpoint), "best_model")
    return register_model_dir(mlflow_client, run_id, checkpoint, registered_name,
                              {"study": info["study"], "trial_id": trial_id, "sweep_run_id": parent})


def register_model_dir(mlflow_client: MlflowClient, run_id: str, model_dir: Path, registered_name: str,
                       tags: dict[str, str]) -> str:
    """Log ``model_dir`` as the run's ``model``, an MLflow Model (``trainables.mlflow_model``:
    pyfunc, from code, with a signature and an input example), and register it as a new
    version; the version number."""
    import mlflow  # lazy: MLflow costs seconds to import, and only sweeps' ends need it here
    import pandas as pd  # lazy: with MLflow

    from trainables import mlflow_model  # lazy: it is MLflow's model file (imports MLflow)

    mlflow.set_tracking_uri(mlflow_client.tracking_uri)
    with mlflow.start_run(run_id=run_id, nested=True):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(mlflow_model.__file__)),
            artifacts={mlflow_model.MODEL_DIR: str(model_dir)},
            signature=mlflow_model.signature(),
            input_example=pd.DataFrame({"text": ["Mi hermana es enfermera en el hospital."]}),
            pip_requirements=[f"profner-hpo=={__version__}"])
    try:
        mlflow_client.get_registered_model(registered_name)
    except mlflow.exceptions.MlflowException:
        mlflow_client.create_registered_model(
            registered_name, description="profner models (pyfunc; profner predict / serve)")
    version = mlflow_client.create_model_version(registered_name, source=info.model_uri,
                                                 run_id=run_id, tags=tags, model_id=info.model_id)
    return str(version.version)
