"""``MODEL_REF`` -> a local model dir plus where it came from (shown by ``GET /model``).

Accepted references:

* a model dir (``TrainedModel.save`` output): used in place;
* ``runs:/<run_id>/<artifact_path>``: a model dir logged as artifacts of an MLflow run;
* ``models:/<name>/<version>`` (or ``models:/<name>@<alias>``): a registered model version;
* ``sweep:<name or dir>``: the best trial of a ``profner tune`` sweep (a sweep dir, or a sweep
  name under ``./ray_results``), read from the ``profner_sweep.json`` the sweep writes, so the
  server needs no Tune code.

MLflow references are fetched with ``mlflow.artifacts.download_artifacts`` (a local artifact
store is read in place; a remote one is copied to a fresh temporary dir). The tracking URI is
the argument, else ``MLFLOW_TRACKING_URI``, else MLflow's default. A new reference form is one
more entry in ``_SCHEMES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


class ModelRefError(ValueError):
    """A model reference that names nothing loadable; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedModel:
    model_dir: Path
    source: dict[str, Any] = field(default_factory=dict)


def resolve(ref: str, tracking_uri: str | None = None) -> ResolvedModel:
    """Where ``ref`` lives on this machine (fetching MLflow artifacts when needed)."""
    for prefix, resolver in _SCHEMES.items():
        if ref.startswith(prefix):
            return resolver(ref, tracking_uri)
    if "://" in ref or ref.startswith(("runs:", "models:")):
        raise ModelRefError(f"model reference {ref!r}: unsupported form; expected a model dir, "
                            f"runs:/<run_id>/<path>, models:/<name>/<version> or sweep:<name>")
    path = Path(ref).expanduser()
    if not path.is_dir():
        what = "is a file, not a model dir" if path.exists() else "does not exist"
        raise ModelRefError(f"model reference {ref!r}: {path} {what} (expected a model dir, "
                            f"runs:/<run_id>/<path> or models:/<name>/<version>)")
    return ResolvedModel(path.resolve(), {"kind": "dir", "ref": ref})


def _from_run(ref: str, tracking_uri: str | None) -> ResolvedModel:
    run_id, _, artifact_path = ref[len("runs:/"):].partition("/")
    if not run_id:
        raise ModelRefError(f"model reference {ref!r}: expected runs:/<run_id>/<artifact_path>")
    client = _client(tracking_uri)
    run = _mlflow_call(ref, lambda: client.get_run(run_id))
    source = {"kind": "mlflow-run", "ref": ref, "run_id": run_id, "artifact_path": artifact_path,
              "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
              "tracking_uri": client.tracking_uri, "tags": _public_tags(run.data.tags)}
    return ResolvedModel(_download(ref, client.tracking_uri), source)


def _from_registry(ref: str, tracking_uri: str | None) -> ResolvedModel:
    name_part = ref[len("models:/"):].split("/", 1)[0]
    rest = ref[len("models:/") + len(name_part):].strip("/")
    client = _client(tracking_uri)
    if "@" in name_part:
        name, alias = name_part.split("@", 1)
        version = _mlflow_call(ref, lambda: client.get_model_version_by_alias(name, alias))
    elif rest.split("/", 1)[0].isdigit():
        name, number = name_part, rest.split("/", 1)[0]
        version = _mlflow_call(ref, lambda: client.get_model_version(name, number))
    else:
        raise ModelRefError(f"model reference {ref!r}: expected models:/<name>/<version> or "
                            f"models:/<name>@<alias>")
    source = {"kind": "mlflow-model", "ref": ref, "name": version.name,
              "version": str(version.version), "run_id": version.run_id,
              "model_source": version.source, "tracking_uri": client.tracking_uri}
    return ResolvedModel(_download(ref, client.tracking_uri), source)


SWEEP_FILE = "profner_sweep.json"
DEFAULT_SWEEP_STORAGE = Path("ray_results")


def _from_sweep(ref: str, tracking_uri: str | None) -> ResolvedModel:
    name = ref[len("sweep:"):]
    candidates = [Path(name).expanduser(), DEFAULT_SWEEP_STORAGE / name]
    sweep_dir = next((c for c in candidates if (c / SWEEP_FILE).is_file()), None)
    if sweep_dir is None:
        tried = ", ".join(str(c / SWEEP_FILE) for c in candidates)
        raise ModelRefError(f"model reference {ref!r}: no sweep found (tried {tried})")
    try:
        info = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        checkpoint = Path(info["best_checkpoint"])
    except (ValueError, KeyError, TypeError) as error:
        raise ModelRefError(f"model reference {ref!r}: {sweep_dir / SWEEP_FILE} names no best "
                            f"checkpoint ({error!r}); has the sweep finished a trial?") from None
    if not checkpoint.is_dir():
        raise ModelRefError(f"model reference {ref!r}: the best checkpoint {checkpoint} is gone")
    source = {"kind": "sweep", "ref": ref, "sweep_dir": str(sweep_dir.resolve()),
              "trial_id": info.get("best_trial_id"), "metric": info.get("metric"),
              "value": info.get("best_value"), "parent_run_id": info.get("parent_run_id")}
    return ResolvedModel(checkpoint.resolve(), source)


_SCHEMES: dict[str, Callable[[str, str | None], ResolvedModel]] = {
    "runs:/": _from_run,
    "models:/": _from_registry,
    "sweep:": _from_sweep,
}


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient  # lazy: a model dir path needs no MLflow (seconds)

    return MlflowClient(tracking_uri=tracking_uri)


MLFLOW_MODEL_ARTIFACT = "model_dir"  # trainables.mlflow_model's artifact key


def _download(ref: str, tracking_uri: str) -> Path:
    """The profner model dir of ``ref``: the fetched dir itself, or, for an MLflow Model
    (``MLmodel`` + the pyfunc's artifacts), the profner model dir it carries; its Python code
    is never run or unpickled here."""
    import mlflow.artifacts  # lazy: as _client

    local = _mlflow_call(ref, lambda: mlflow.artifacts.download_artifacts(
        artifact_uri=ref, tracking_uri=tracking_uri))
    path = Path(local)
    if not path.is_dir():
        raise ModelRefError(f"model reference {ref!r} is the file {path.name}, not a model dir")
    if (path / "MLmodel").is_file():
        return _profner_dir_of(ref, path)
    return path


def _profner_dir_of(ref: str, path: Path) -> Path:
    """The profner model dir an MLflow Model (``MLmodel``, read as YAML) carries as its
    ``model_dir`` artifact."""
    import yaml

    spec = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8")) or {}
    artifacts = (spec.get("flavors", {}).get("python_function", {}).get("artifacts") or {})
    entry = artifacts.get(MLFLOW_MODEL_ARTIFACT) or {}
    found = path / str(entry.get("path", ""))
    if not entry or not (found / "meta.json").is_file():
        raise ModelRefError(f"model reference {ref!r}: an MLflow Model without a profner "
                            f"'{MLFLOW_MODEL_ARTIFACT}' artifact (not logged by profner)")
    return found


def _mlflow_call(ref: str, call: Callable[[], Any]) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except (MlflowException, OSError) as error:
        raise ModelRefError(f"model reference {ref!r}: {error}") from error


def _public_tags(tags: dict[str, str]) -> dict[str, str]:
    """The run's own tags (trial name/id, ...), without MLflow's ``mlflow.*`` bookkeeping."""
    return {key: value for key, value in tags.items() if not key.startswith("mlflow.")}
