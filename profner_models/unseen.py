"""Evidence on unseen text for the model that ships.

A refit (``data.train_on_dev: true``) trains on every labelled document, so nothing it prints
afterwards is measured on text it has not learned from. ``train`` therefore never refits
blindly; it runs the recipe twice:

1. **held-out run**: the same config with the dev split held out of everything the model learns
   from (vocabulary, vectors, PCA, NORM index: ``training.held_out_of``). Its dev scores at the
   refit's last epoch are the *unseen-text estimate* of the recipe (trained on 80% of the data,
   so if anything a slightly pessimistic one for the refit);
2. **refit** on train + dev, the same number of epochs;
3. **check**: both models on labelled text that neither trained on (``refit_check``: a refit
   shown worse than two runs of one recipe differ, or firing on unknown words, fails it).
   Both results go into the model dir's ``meta.json`` (``unseen``) and are printed.

With ``data.train_on_dev: false`` the dev split is already held out: its scores are the estimate
and no second run is needed. The held-out run can go in a second process (``jobs=2``), so on a
two-core machine the recipe costs the wall time of the refit alone.
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from profner_models import artifacts
from profner_models.config import ConfigError
from profner_models.documents import Document
from profner_models.ensemble import Ensemble, ensemble_block, member_config
from profner_models.predict import Predictor, predict_corpus
from profner_models.refit_check import check, check_documents
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of, validate
from profner_models.training import FitResult, fit, load_task_data


@dataclass
class Trained:
    """What ``train`` returns: the model to save, its fit, and the evidence on unseen text."""

    result: FitResult
    unseen: dict = field(default_factory=dict)
    holdout: FitResult | None = None

    @property
    def passed(self) -> bool:
        return bool(self.unseen.get("check", {}).get("passed", True))


def train(config: dict, data_dir: Path | str | None = None, progress: bool = True,
          jobs: int = 1) -> Trained:
    """Fit ``config`` on ``data_dir``; with ``data.train_on_dev``, the held-out run, the refit
    and their check (module docstring)."""
    config = validate(config)
    if not config["data"]["train_on_dev"]:
        train_docs, dev = load_task_data(config, data_dir)
        result = fit(config, train_docs, dev, progress=progress)
        return Trained(result, {"estimate": _estimate(result, "dev split held out", last=False)})
    held_config = holdout_config(config)
    train_docs, dev = load_task_data(held_config, data_dir)
    if jobs > 1:
        with tempfile.TemporaryDirectory(prefix="profner-holdout-") as tmp:
            with worker_pool(1) as pool:
                pending = pool.submit(_fit_and_save, held_config, str(data_dir) if data_dir else None, tmp)
                refit = fit(config, [*train_docs, *dev], dev, progress=progress)
                history, best_epoch, best_metrics = pending.result()
            holdout = FitResult(artifacts.load(tmp, keep_states=True), history, best_epoch, best_metrics)
    else:
        holdout = fit(held_config, train_docs, dev, progress=progress)
        refit = fit(config, [*train_docs, *dev], dev, progress=progress)
    trained = evidence(config, refit, holdout, [*train_docs, *dev])
    seeds = int(config["training"]["estimate_seeds"])
    if seeds > 1:
        trained.unseen["estimate"] = seeds_estimate(
            [trained.unseen["estimate"], *_more_holdout_runs(held_config, data_dir, seeds, jobs)])
    return trained


def evidence(config: dict, refit: FitResult, holdout: FitResult,
             documents: Sequence[Document]) -> Trained:
    """A refit and its held-out run as ``Trained``: the held-out run's last epoch as the
    estimate, the check on the check text outside ``documents`` (those the refit learned from)."""
    estimate = _estimate(holdout, "held-out run of this recipe (dev split held out)", last=True)
    checked = check(refit.model, holdout.model, check_documents(config, documents))
    return Trained(refit, {"estimate": estimate, "check": checked}, holdout)


def _more_holdout_runs(held_config: dict, data_dir: Path | str | None, seeds: int,
                       jobs: int) -> list[dict]:
    """The estimates of held-out runs with seeds ``seed + 1`` .. ``seed + seeds - 1``."""
    first = int(held_config["training"]["seed"])
    configs = []
    for seed in range(first + 1, first + seeds):
        configs.append(copy.deepcopy(held_config))
        configs[-1]["training"]["seed"] = seed
    source = str(data_dir) if data_dir else None
    if jobs > 1:
        with worker_pool(jobs) as pool:
            histories = list(pool.map(_fit_history, configs, [source] * len(configs)))
    else:
        histories = [_fit_history(c, source) for c in configs]
    return [_row_estimate(history[-1], f"held-out run, seed {c['training']['seed']}")
            for c, history in zip(configs, histories)]


def _fit_history(config: dict, data_dir: str | None) -> list[dict]:
    train_docs, dev = load_task_data(config, data_dir)
    return fit(config, train_docs, dev, progress=False).history


def seeds_estimate(runs: list[dict]) -> dict:
    """Held-out runs of one recipe that differ in their seed: their mean as the estimate."""
    spread = _spread(runs)
    return {"from": f"mean of {len(runs)} held-out runs of this recipe (seeds differ; dev "
                    "split held out)",
            "epoch": runs[0]["epoch"], "train_docs": runs[0]["train_docs"],
            "dev_docs": runs[0]["dev_docs"], "metrics": spread["mean"], "seeds": spread}


def _spread(estimates: list[dict]) -> dict:
    """Mean, std, min and max of the estimates' metrics (those all share), and each one."""
    keys = sorted(set.intersection(*(set(e["metrics"]) for e in estimates)))
    table = np.array([[e["metrics"][k] for k in keys] for e in estimates])
    return {"mean": dict(zip(keys, table.mean(0).tolist())),
            "std": dict(zip(keys, table.std(0).tolist())),
            "min": dict(zip(keys, table.min(0).tolist())),
            "max": dict(zip(keys, table.max(0).tolist())),
            "each": estimates}


@dataclass
class TrainedEnsemble:
    """What ``train_ensemble`` returns: the ensemble to save, each member's ``Trained``, and
    the ensemble's own evidence on unseen text."""

    ensemble: Ensemble
    members: list[Trained]
    unseen: dict = field(default_factory=dict)
    held_out: Ensemble | None = None
    """The ensemble of the members' held-out runs (the one scored for the estimate)."""

    @property
    def passed(self) -> bool:
        return bool(self.unseen.get("check", {}).get("passed", True))


def train_ensemble(config: dict, data_dir: Path | str | None = None, progress: bool = True,
                   jobs: int = 1) -> TrainedEnsemble:
    """Each member recipe through ``train`` (held-out run, refit, check), then the ensemble of
    the refits, with the ensemble of the held-out runs scored on dev as its estimate (and each
    member's estimate, their mean and spread) and checked against it on the check text."""
    block = ensemble_block(config)
    recipes = member_recipes(config)
    splits = {dev_split(r) for r in recipes}
    if len(splits) > 1:
        raise ConfigError(f"ensemble.members: the members must share data.dev_from, "
                          f"dev_fraction, dev_seed and train_on_dev (got {sorted(splits)})")
    members = train_members(recipes, data_dir, progress, jobs)
    combine = {"method": block["method"], "min_votes": block["min_votes"],
               "weights": [member["weight"] for member in block["members"]],
               "entity_threshold": block["entity_threshold"],
               "roles": ([member["roles"] for member in block["members"]]
                         if any(member["roles"] for member in block["members"]) else None)}
    shipped = Ensemble([m.result.model for m in members], **combine)
    refit = bool(recipes[0]["data"]["train_on_dev"])
    held_out = Ensemble([(m.holdout or m.result).model for m in members], **combine)
    train_docs, dev = load_task_data(holdout_config(recipes[0]), data_dir)
    unseen = {"estimate": ensemble_estimate(held_out, dev, [m.unseen["estimate"] for m in members],
                                             progress)}
    if refit:
        unseen["check"] = check(shipped, held_out, check_documents(recipes[0], [*train_docs, *dev]))
    shipped.metrics = held_out.metrics = unseen["estimate"]["metrics"]
    return TrainedEnsemble(shipped, members, unseen, held_out if refit else None)


def train_members(recipes: Sequence[dict], data_dir: Path | str | None, progress: bool,
                  jobs: int) -> list[Trained]:
    """Each member recipe as ``train`` gives it (a refit and its held-out run, or one run when
    the dev split is held out), its fits on ``jobs`` processes at once: this one (with
    progress) and ``jobs - 1`` workers, each taking the next fit when its last one ends, the
    refits (the most text) first. A worker's model comes back through a model dir, loaded with
    the frozen encoder's states store (``keep_states``: no window encoded twice), once every fit
    has ended: building a model draws from torch's generator, so a load beside a fit here
    shifted its dropout masks (a held-out run scored 0.774 in the job, 0.780 alone)."""
    refits = bool(recipes[0]["data"]["train_on_dev"])
    fits = [(i, True) for i in range(len(recipes))] if refits else []
    fits += [(i, False) for i in range(len(recipes))]
    pending, lock = list(fits), threading.Lock()
    done: dict[tuple[int, bool], FitResult] = {}
    saved: dict[tuple[int, bool], tuple[str, list, int, dict]] = {}  # a worker's: dir and fit
    errors: list[Exception] = []
    source = str(data_dir) if data_dir else None

    def config_of(member: int, refit: bool) -> dict:
        return recipes[member] if refit else holdout_config(recipes[member])

    def take() -> tuple[int, bool] | None:
        with lock:
            return pending.pop(0) if pending and not errors else None

    def feed(pool: ProcessPoolExecutor, tmp: str) -> None:
        while (key := take()) is not None:
            config, out = config_of(*key), f"{tmp}/{key[0]}-{'refit' if key[1] else 'held-out'}"
            try:
                saved[key] = (out, *pool.submit(_fit_and_save, config, source, out).result())
            except Exception as error:  # raised again in the main thread
                errors.append(error)

    with tempfile.TemporaryDirectory(prefix="profner-members-") as tmp, \
            (worker_pool(jobs - 1) if jobs > 1 else nullcontext()) as pool:
        feeders = [threading.Thread(target=feed, args=(pool, tmp), daemon=True)
                   for _ in range(jobs - 1)]
        for thread in feeders:
            thread.start()
        while (key := take()) is not None:
            config = config_of(*key)
            train_docs, dev = load_task_data(config, data_dir)
            done[key] = fit(config, train_docs, dev, progress=progress)
        for thread in feeders:
            thread.join()
        for key, (out, history, best_epoch, best_metrics) in saved.items():
            done[key] = FitResult(artifacts.load(out, keep_states=True), history, best_epoch,
                                  best_metrics)
    if errors:
        raise errors[0]
    trained = []
    for member, recipe in enumerate(recipes):
        if not refits:
            result = done[(member, False)]
            trained.append(Trained(result, {"estimate": _estimate(result, "dev split held out",
                                                                  last=False)}))
            continue
        train_docs, dev = load_task_data(recipe, data_dir)
        trained.append(evidence(recipe, done[(member, True)], done[(member, False)], train_docs))
    return trained


def dev_split(config: dict) -> str:
    """How a config carves its dev split and whether it trains on it, as one comparable text."""
    return json.dumps({k: config["data"].get(k) for k in ("dev_from", "dev_fraction", "dev_seed",
                                                           "train_on_dev")}, sort_keys=True)


def combined_estimate(combined: Ensemble, member_estimates: list[dict],
                      data_dir: Path | str | None = None) -> dict:
    """The estimate of an ensemble of saved models (``profner combine --data``): scored on the
    dev split every member held out of its training, with the members' own estimates beside
    it. ``ConfigError`` when the members carve different dev splits or one trained on its dev
    split (no text then that no member learned from)."""
    configs = [member.config for member in combined.members]
    splits = sorted({dev_split(c) for c in configs})
    if len(splits) > 1:
        raise ConfigError(f"the members' dev splits differ (data.dev_from, dev_fraction, "
                          f"dev_seed, train_on_dev: {', '.join(splits)}): no dev text they all "
                          f"held out")
    if configs[0]["data"].get("train_on_dev"):
        raise ConfigError("the members trained on their dev split (data.train_on_dev true: "
                          "refits): no text is left that no member learned from; combine their "
                          "held-out runs to measure, or leave out --data")
    _, dev = load_task_data(configs[0], data_dir)
    return ensemble_estimate(combined, dev, member_estimates)


def member_recipes(config: dict) -> list[dict]:
    """The checked config of each member of an ensemble config, the config's blocks besides
    ``task`` and ``ensemble`` (a ``--set``) merged into every member. A member's estimate takes
    one held-out run whatever its ``training.estimate_seeds``: the ensemble's estimate is its own."""
    task = config.get("task", "profner")
    shared = {key: value for key, value in config.items() if key not in ("task", "ensemble")}
    recipes = [validate(member_config(member, task, shared))
               for member in ensemble_block(config)["members"]]
    for recipe in recipes:
        recipe["training"]["estimate_seeds"] = 1
    return recipes


def ensemble_estimate(held_out: Ensemble, dev: Sequence[Document], members: list[dict],
                      progress: bool = True) -> dict:
    """The held-out ensemble's scores on dev, and its members' estimates (mean, spread);
    ``progress``: lines while it predicts (``predict_corpus``)."""
    task = task_of(held_out.config)
    gold = apply_span_policy(dev, types=held_out.config["data"]["types"], overlap="keep_all")[0]
    predictions = predict_corpus(Predictor(held_out), [doc.text for doc in gold], progress)
    scores = task.score(held_out, gold, [p.as_document(d.id, d.text) for d, p in zip(gold, predictions)])
    return {"from": f"the ensemble of the members' held-out runs, on the {len(gold)} dev "
                    "documents none of them trained on",
            "dev_docs": len(gold), "metrics": scores, "members": _spread(members)}


def holdout_config(config: dict) -> dict:
    """``config`` with the dev split held out; the recipe (epochs, last kept) unchanged."""
    held = copy.deepcopy(config)
    held["data"]["train_on_dev"] = False
    return held


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes for the fits that run beside this one (spawned: no forked torch state); each
    exits when this process dies, so a killed ``profner train`` leaves no fit running."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with, initargs=(os.getpid(),))


def _exit_with(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _fit_and_save(config: dict, data_dir: str | None, out: str) -> tuple[list, int, dict]:
    train_docs, dev = load_task_data(config, data_dir)
    result = fit(config, train_docs, dev, progress=False)
    artifacts.save(result.model, out)
    return result.history, result.best_epoch, result.best_metrics


def _estimate(result: FitResult, source: str, last: bool) -> dict:
    """The dev scores that stand for unseen text: the last epoch's (the refit keeps its last)
    or the selected one's, with the dev split's novelty."""
    return _row_estimate(result.history[-1] if last
                         else {"epoch": result.best_epoch, **result.best_metrics}, source)


def _row_estimate(row: dict, source: str) -> dict:
    return {"from": source, "epoch": int(row["epoch"]), "train_docs": int(row["train_docs"]),
            "dev_docs": int(row["dev_docs"]),
            "metrics": {k: float(v) for k, v in row.items()
                        if k.startswith(("f1", "precision", "recall", "dev_un"))}}
