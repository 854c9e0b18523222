"""MLflow wiring for sweeps: one parent run per sweep, one child run per trial.

Everything MLflow happens in the Tune driver (:class:`TrialTracker` is a Tune ``Callback``), so
trial workers never open the store: no ``setup_mlflow`` race on a fresh sqlite DB (stack-notes)
and remote nodes need no tracking credentials. Ray's ``MLflowLoggerCallback`` can nest runs
(``tags={"mlflow.parentRunId": ...}``) but keys its runs by an in-memory ``Trial`` object and
creates a second run for a trial restored after a driver crash; this callback keys each child
run by a ``trial_id`` tag under its parent, so a resumed sweep reuses the run.

Child run: params = the trial's sampled config flattened (``model.backbone.hidden``); metrics =
every numeric value ``fit`` reports, per epoch (``step`` = epoch): the dev scores as
``dev/<name>``, the rest (train loss, times, counts) as ``per_epoch/<name>``; plus ``best_<name>``
for the best epoch's values at the end. The prefixes are for the MLflow UI (3.17, seen in
Chromium): a run's charts are grouped by the text before a ``/``, prefixed sections first and in
name order, unprefixed keys last ("Model metrics"), charts in name order within a section; so
the run page opens on the dev learning curves and the single-value ``best_*`` bars close it.
Tags = study, search-space file, seed, git commit, trial id, node/host/pid, the sampled config
as JSON (``profner.config``, read by refit and narrow), and ``profner.stopped_by`` (completed |
scheduler | error; "scheduler" = fewer epochs than planned, which ASHA's stops are, as are early
stops on ``training.early_stopping_patience``).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS
from ray.tune.utils import flatten_dict

from profner_models.config import REPO_ROOT
from trainables.results import ran_all_epochs

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient
    from ray.tune.experiment import Trial

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "trial_id"
CONFIG_TAG = "profner.config"
KIND_TAG = "profner.kind"  # sweep | trial
STOPPED_TAG = "profner.stopped_by"
PLACEMENT_KEYS = ("node_id", "host", "worker_pid", "device")
KIND_EXPERIMENT_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# A saved view of the UI's runs page is an experiment tag VIEW_TAG + key holding the view's
# state as JSON (what the UI's "Share" button writes); a link opens it with viewStateShareKey=key.
VIEW_TAG, VIEW_PARAM = "mlflow.sharedViewState.", "viewStateShareKey"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `profner ui` serves
MAX_PARAM_LENGTH = 6000
SCORE_PREFIXES = ("f1_", "precision_", "recall_")  # with "loss": the dev evaluation's keys


def curve(name: str) -> str:
    """The MLflow key of the per-epoch metric ``name`` of a trial run (see above)."""
    is_score = name == "loss" or name.startswith(SCORE_PREFIXES)
    return ("dev/" if is_score else "per_epoch/") + name


def default_tracking_uri() -> str:
    """``sqlite:///<cwd>/mlflow.db`` (absolute, so Ray workers and later commands agree)."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def git_commit() -> str:
    """The checkout's HEAD commit (``+dirty`` when tracked files changed), or ``unknown``."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "diff", "--quiet", "HEAD"],
                               capture_output=True, timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def client(tracking_uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The experiment id, creating it (artifacts beside a sqlite DB) when missing.

    Called in the driver before ``Tuner.fit`` so the store's schema and the experiment exist
    before anything else touches them (stack-notes: fresh sqlite DB race).
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow_client = client(tracking_uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.tags.get(KIND_EXPERIMENT_TAG) != MODEL_TRAINING:
            mlflow_client.set_experiment_tag(experiment.experiment_id, KIND_EXPERIMENT_TAG,
                                             MODEL_TRAINING)
        return experiment.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        artifact_location = (db.parent / "mlartifacts").resolve().as_uri()
    experiment_id = mlflow_client.create_experiment(
        name, artifact_location=artifact_location, tags={KIND_EXPERIMENT_TAG: MODEL_TRAINING})
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ui_links(tracking_uri: str, experiment_id: str, run_id: str | None = None,
             ui: str = DEFAULT_UI, saved_view: bool = True) -> dict[str, str]:
    """Addresses of the experiment (and run) in the MLflow UI's model-training view: the UI of
    an ``mlflow server`` store is the store's own address, a sqlite store's what ``profner ui``
    starts. With ``run_id`` (a sweep's or refit's parent run) and ``saved_view``, the
    experiment opens on that run's saved view (``save_trials_view``)."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else ui
    view = "?workflowType=machine_learning"
    links = {"experiment": f"{base}/#/experiments/{experiment_id}{view}"}
    if run_id and saved_view:  # (the runs page's own address: the experiment's drops the view)
        links["experiment"] = (f"{base}/#/experiments/{experiment_id}/runs{view}"
                               f"&{VIEW_PARAM}={run_id}")
    if run_id:
        links["run"] = f"{base}/#/experiments/{experiment_id}/runs/{run_id}{view}"
    return links


def trials_view(parent_run_id: str, metric: str, mode: str, params: Sequence[str]) -> dict:
    """The runs page as a sweep reads best: its trials alone (not one collapsed parent row),
    best first, the scores, how each trial stopped and its sampled values as columns, every
    trial in the charts (the UI charts the first 10 by default)."""
    best = f"best_{metric}"
    columns = [f"metrics.`{m}`" for m in (best, curve(metric), curve("epoch"))]
    columns += [f"tags.`{STOPPED_TAG}`", "tags.`seed`"] + [f"params.`{p}`" for p in params]
    return {"searchFilter": f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
            "orderByKey": f"metrics.`{best}`", "orderByAsc": mode == "min",
            "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL", "hideEmptyCharts": True}


def save_trials_view(tracking_uri: str, experiment_id: str, parent_run_id: str, metric: str,
                     mode: str, params: Sequence[str] = ()) -> None:
    """Save ``trials_view`` on the experiment under the parent run's id (``ui_links``)."""
    client(tracking_uri).set_experiment_tag(
        experiment_id, VIEW_TAG + parent_run_id,
        json.dumps(trials_view(parent_run_id, metric, mode, params)))


def dataset_info(data_dir: str | None, task: str) -> dict[str, str]:
    """What a trial's MLflow dataset inputs say about its corpus: name, where it is, and a
    digest of its files (names, sizes and contents)."""
    if data_dir is None:
        from profner_models.tasks import task_of

        root = Path(task_of({"task": task}).sample_dir())
    else:
        root = Path(data_dir)
    sha = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return {"name": task, "source": str(root.resolve()), "digest": sha.hexdigest()[:10],
            "kind": "bundled sample" if data_dir is None else "corpus"}


def start_parent_run(tracking_uri: str, experiment_id: str, name: str, tags: dict[str, str],
                     params: dict[str, Any], kind: str = "sweep") -> str:
    mlflow_client = client(tracking_uri)
    run = mlflow_client.create_run(experiment_id, run_name=name, tags={**tags, KIND_TAG: kind})
    log_params(mlflow_client, run.info.run_id, params)
    return run.info.run_id


def log_params(mlflow_client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, _param_value(v)) for k, v in flatten_dict(params, delimiter=".").items()]
    for start in range(0, len(items), 100):
        mlflow_client.log_batch(run_id, params=items[start:start + 100])


def set_tags(mlflow_client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    if tags:
        mlflow_client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)
    return text[:MAX_PARAM_LENGTH]


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list:
    """Every (non-deleted) trial run under a sweep's parent run."""
    return client(tracking_uri).search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=10000)


def reconcile_after_crash(tracking_uri: str, experiment_id: str, parent_run_id: str,
                          known_trial_ids: set[str]) -> dict[str, int]:
    """Before resuming a sweep: child runs left RUNNING by a killed driver become KILLED
    (a trial Tune resumes reopens its run), and runs of trials the restored Tune state never
    heard of (created after its last snapshot; Tune will sample anew) are deleted, so the
    resumed sweep has exactly one run per trial."""
    mlflow_client = client(tracking_uri)
    counts = {"killed": 0, "deleted": 0}
    for run in child_runs(tracking_uri, experiment_id, parent_run_id):
        trial_id = run.data.tags.get(TRIAL_TAG, "")
        if trial_id not in known_trial_ids:
            mlflow_client.set_tag(run.info.run_id, "profner.orphan", "true")
            mlflow_client.delete_run(run.info.run_id)
            counts["deleted"] += 1
        elif run.info.status == "RUNNING":
            mlflow_client.set_tag(run.info.run_id, "profner.killed_at", _now())
            mlflow_client.set_terminated(run.info.run_id, status="KILLED")
            counts["killed"] += 1
    return counts


def log_datasets(mlflow_client: MlflowClient, run_id: str, data: dict[str, str],
                 result: dict[str, Any], config: dict[str, Any]) -> None:
    """The trial's training and dev data as MLflow dataset inputs (the UI's Dataset column):
    the corpus digest, where it is, the document counts, how dev was split off."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    split = config.get("data", {})
    inputs = []
    for part, context, count in (("train", "training", "train_docs"), ("dev", "validation", "dev_docs")):
        profile = {"documents": int(result.get(count, 0)), "source_kind": data["kind"],
                   "dev": {k: split[k] for k in ("dev_fraction", "dev_seed", "train_on_dev") if k in split}}
        dataset = Dataset(name=f"{data['name']}-{part}", digest=data["digest"], source_type="local",
                          source=json.dumps({"uri": data["source"]}), profile=json.dumps(profile))
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    mlflow_client.log_inputs(run_id, datasets=inputs)


def metric_keys(result: dict[str, Any]) -> set[str]:
    """The result keys that are the trial's metrics (what ``fit`` reports), not Tune's own
    bookkeeping (``time_total_s`` kept: a trial's duration)."""
    return (set(result) - set(AUTO_RESULT_KEYS) - set(PLACEMENT_KEYS)
            - {"done", "checkpoint_dir_name", "should_checkpoint"}) | {"time_total_s"}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def numeric(values: dict[str, Any] | None) -> dict[str, float]:
    """The finite numbers of a dict (bools and everything else left out), as floats: what
    MLflow takes as metrics."""
    return {k: float(v) for k, v in (values or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class TrialTracker(tune.Callback):
    """Tune callback: a child MLflow run per trial, nested under the sweep's parent run.

    ``metric_keys``: the result keys logged as metrics (what ``fit`` reports); Tune's own
    bookkeeping (time_this_iter_s, ...) stays out of MLflow except ``time_total_s``.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 tags: dict[str, str], metric: str, mode: str, base_seed: int | None,
                 data: dict[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = dict(tags)
        self.metric, self.mode = metric, mode
        self.base_seed = base_seed
        self.data = data
        self._client = None
        self._runs: dict[str, str] = {}
        self._best: dict[str, dict[str, float]] = {}
        self._logged: dict[str, int] = {}  # run id -> last epoch in MLflow

    # Tune pickles run_config (with its callbacks) for Tuner.restore: no client in the pickle.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _runs={}, _best={}, _logged={})
        return state

    @property
    def mlflow(self) -> MlflowClient:
        if self._client is None:
            self._client = client(self.tracking_uri)
        return self._client

    def run_id(self, trial: Trial) -> str:
        """The trial's run: the cached one, one found by tag (a resumed sweep), or a new one."""
        trial_id = trial.trial_id
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and "
                          f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=2)
        if found:
            run_id = found[0].info.run_id
            self.mlflow.update_run(run_id, status="RUNNING")
            self.mlflow.set_tag(run_id, "profner.resumed", "true")
            history = self.mlflow.get_metric_history(run_id, curve(self.metric))
            self._logged[run_id] = max((m.step for m in history), default=0)
        else:
            config = trial.config
            seed = config.get("training", {}).get("seed", self.base_seed)
            tags = {**self.tags, PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id,
                    "trial_name": str(trial), KIND_TAG: "trial", "seed": str(seed),
                    CONFIG_TAG: json.dumps(config, sort_keys=True)[:8000]}
            run = self.mlflow.create_run(self.experiment_id, run_name=str(trial), tags=tags)
            run_id = run.info.run_id
            log_params(self.mlflow, run_id, config)
        self._runs[trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.run_id(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict,
                        **info: Any) -> None:
        from mlflow.entities import Metric

        run_id = self.run_id(trial)
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        values = {k: v for k, v in numeric(result).items() if k in metric_keys(result)}
        # A trial restored from a checkpoint older than its last report (a driver killed
        # between the two) trains that epoch again, with the same result: it is in MLflow once.
        if epoch > self._logged.get(run_id, 0):
            stamp = int(time.time() * 1000)
            self.mlflow.log_batch(run_id, metrics=[Metric(curve(k), v, stamp, epoch)
                                                   for k, v in values.items()])
            self._logged[run_id] = epoch
        if epoch == 1 or trial.trial_id not in self._best:
            set_tags(self.mlflow, run_id, {k: str(result[k]) for k in PLACEMENT_KEYS if k in result})
        if self.data and epoch == 1:
            log_datasets(self.mlflow, run_id, self.data, result, trial.config)
        best = self._best.get(trial.trial_id)
        value = values.get(self.metric)
        if value is not None and (best is None or self._better(value, best[self.metric])):
            self._best[trial.trial_id] = values

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.mode == "max" else value < than

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finish(trial, "FAILED")

    def _finish(self, trial, status: str) -> None:
        run_id = self.run_id(trial)
        best = self._best.get(trial.trial_id) or {}
        # Tune's own per-trial summary survives a driver restart; this callback's cache does
        # not, so a resumed trial whose best epoch came before the crash keeps that value.
        overall = trial.metric_analysis.get(self.metric, {}).get(self.mode)
        if overall is not None and best.get(self.metric) != overall:
            best = {self.metric: overall}
        if best:
            stamp = int(time.time() * 1000)
            from mlflow.entities import Metric

            metrics = [Metric(f"best_{k}", v, stamp, 0) for k, v in best.items() if v is not None]
            self.mlflow.log_batch(run_id, metrics=metrics)
        last = trial.last_result or {}
        if status == "FAILED":
            stopped_by = "error"
            error = _error_text(trial)
            if error:
                self.mlflow.set_tag(run_id, "profner.error", error[-5000:])
        else:
            stopped_by = "completed" if ran_all_epochs(last) else "scheduler"
        set_tags(self.mlflow, run_id, {STOPPED_TAG: stopped_by,
                                      "profner.epochs_run": str(last.get("epoch", 0))})
        self.mlflow.set_terminated(run_id, status=status)


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        return Path(path).read_text(encoding="utf-8") if path else ""
    except OSError:
        return ""
