"""Evidence on unseen text for the model that ships.

A refit (``data.train_on_dev: true``) trains on every labelled document, so nothing it prints
afterwards is measured on text it has not learned from. ``train`` therefore never refits
blindly; it runs the recipe twice:

1. **held-out run**: the same config with the dev split held out of everything the model learns
   from (vocabulary, vectors, PCA, NORM index: ``training.held_out_of``). Its dev scores at the
   refit's last epoch are the *unseen-text estimate* of the recipe (trained on 80% of the data,
   so if anything a slightly pessimistic one for the refit);
2. **refit** on train + dev, the same number of epochs;
3. **check**: both models on labelled text that neither trained on (``data.check``, default the
   task's bundled sample corpus, written for this project and in no file of the real corpora):
   each one's scores, the refit's agreement with the held-out model (the held-out model's
   predictions scored as gold), and the share of each model's predicted entities that hold a
   word outside its vocabulary. A refit that fires on unknown words, as the one of 2026-11 did
   (434 of its 539 false positives on new tweets), shows there. The check fails when the refit
   is *shown* worse than two runs of one recipe differ: a paired bootstrap over the check
   documents (``BOOTSTRAP_SAMPLES`` resamples, the same documents for both models) must put the
   upper end of the one-sided 95% interval of ``refit - held-out`` below ``-MODEL_NOISE``; or
   when its unknown-word entity share exceeds the held-out model's by ``UNKNOWN_MARGIN``. The
   bootstrap covers the choice of documents, not that each model is one draw of its training:
   on the 30 MEDDOPROF check documents two held-out runs of the same recipe and seed scored
   f1_mean 0.585 and 0.628 (threads make a run nondeterministic), three seeds of the recipe
   before 0.586 / 0.623 / 0.602, and a refit 0.580 that an interval below zero alone refused
   (2026-12-05). A fixed margin on the observed difference refused good refits by chance too
   (0.567 vs 0.627, and the refused refit was the better model on 324 held-back documents).
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from profner_models import artifacts
from profner_models.config import ConfigError
from profner_models.corpus import load_corpus, splits_of
from profner_models.documents import Document, Prediction
from profner_models.ensemble import Ensemble, ensemble_block, member_config
from profner_models.models import UNKNOWN, TrainedModel
from profner_models.predict import Predictor, predict_corpus
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of, validate
from profner_models.text.tags import token_range
from profner_models.text.tokenize import tokenize
from profner_models.training import FitResult, fit, load_task_data

BOOTSTRAP_SAMPLES = 1000
MODEL_NOISE = 0.05  # how far two runs of one recipe lie apart on a check set (docstring)
UNKNOWN_MARGIN = 0.10
BUNDLED = "bundled"


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
            holdout = FitResult(artifacts.load(tmp), history, best_epoch, best_metrics)
    else:
        holdout = fit(held_config, train_docs, dev, progress=progress)
        refit = fit(config, [*train_docs, *dev], dev, progress=progress)
    check_docs = check_documents(config, [*train_docs, *dev])
    estimate = _estimate(holdout, "held-out run of this recipe (dev split held out)", last=True)
    seeds = int(config["training"]["estimate_seeds"])
    if seeds > 1:
        estimate = seeds_estimate([estimate, *_more_holdout_runs(held_config, data_dir, seeds,
                                                                 jobs)])
    unseen = {"estimate": estimate, "check": check(refit.model, holdout.model, check_docs)}
    return Trained(refit, unseen, holdout)


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
    members = [train(recipe, data_dir, progress, jobs) for recipe in recipes]
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
    """The checked config of each member of an ensemble config. A member's estimate takes one
    held-out run whatever its ``training.estimate_seeds``: the ensemble's estimate is its own."""
    task = config.get("task", "profner")
    recipes = [validate(member_config(member, task)) for member in ensemble_block(config)["members"]]
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


def check_documents(config: dict, trained_on: Sequence[Document]) -> list[Document]:
    """``data.check``: ``bundled`` (the task's sample corpus, every split), a corpus root, or
    null; documents whose text was trained on are left out."""
    source = config["data"].get("check", BUNDLED)
    if source is None:
        return []
    root = Path(task_of(config).sample_dir() if source == BUNDLED else source)
    seen = {doc.text for doc in trained_on}
    docs = [doc for split in splits_of(root) for doc in load_corpus(root, split)[0]
            if doc.text not in seen]
    return apply_span_policy(docs, types=config["data"]["types"], overlap="keep_all")[0]


def check(refit: TrainedModel | Ensemble, holdout: TrainedModel | Ensemble, docs: Sequence[Document],
          seed: int = 13) -> dict:
    """The refit against the held-out model on ``docs`` (module docstring)."""
    if not docs:
        return {"documents": 0, "passed": True, "note": "no check text that neither model saw"}
    task = task_of(refit.config)
    texts = [doc.text for doc in docs]
    out: dict = {"documents": len(docs), "metric": task.metric}
    predicted = {}
    for name, model in (("refit", refit), ("holdout", holdout)):
        predictions = Predictor(model).predict(texts)
        predicted[name] = [p.as_document(doc.id, doc.text) for doc, p in zip(docs, predictions)]
        out[name] = {task.metric: task.score(model, docs, predicted[name])[task.metric],
                     "unknown_entity_share": unknown_entity_share(model, texts, predictions)}
    out["agreement"] = task.score(refit, predicted["holdout"], predicted["refit"])[task.metric]
    out["difference"] = paired_bootstrap(
        lambda rows: (task.score(refit, *_rows(docs, predicted["refit"], rows))[task.metric]
                      - task.score(holdout, *_rows(docs, predicted["holdout"], rows))[task.metric]),
        len(docs), seed)
    shown_worse = worse_than_noise(out["difference"])
    unknown_worse = (out["refit"]["unknown_entity_share"]
                     > out["holdout"]["unknown_entity_share"] + UNKNOWN_MARGIN)
    out["passed"] = not (shown_worse or unknown_worse)
    out["verdict"] = verdict(out, shown_worse, unknown_worse)
    return out


def worse_than_noise(difference: dict) -> bool:
    """A ``paired_bootstrap`` of refit - held-out that shows the refit worse, with 95%
    confidence, by more than two runs of one recipe differ (``MODEL_NOISE``)."""
    return difference["high"] < -MODEL_NOISE


def paired_bootstrap(difference: Callable[[np.ndarray], float], count: int, seed: int,
                     samples: int = BOOTSTRAP_SAMPLES) -> dict:
    """``difference(rows)`` on all rows (``observed``) and on ``samples`` resamples of the rows
    with replacement: the 5th and 95th percentiles (``low``, ``high``: a 90% interval, and each
    end a one-sided 95% bound) and the share of resamples where it is >= 0."""
    generator = np.random.default_rng(seed)
    draws = np.array([difference(generator.integers(0, count, count)) for _ in range(samples)])
    return {"observed": float(difference(np.arange(count))),
            "low": float(np.percentile(draws, 5)), "high": float(np.percentile(draws, 95)),
            "share_not_worse": float((draws >= 0).mean()), "samples": samples}


def _rows(gold: Sequence[Document], predicted: Sequence[Document], rows: np.ndarray
          ) -> tuple[list[Document], list[Document]]:
    """The gold and predicted documents at ``rows``, each draw its own id (a document drawn
    twice counts twice)."""
    return ([replace(gold[r], id=f"{i}:{gold[r].id}") for i, r in enumerate(rows)],
            [replace(predicted[r], id=f"{i}:{predicted[r].id}") for i, r in enumerate(rows)])


def verdict(out: dict, shown_worse: bool, unknown_worse: bool) -> str:
    """One line on what the check found and how sure it is."""
    d = out["difference"]
    line = (f"refit - held-out {out['metric']} on {out['documents']} unseen documents: "
            f"{d['observed']:+.3f} (90% interval {d['low']:+.3f} to {d['high']:+.3f}; refit not "
            f"worse in {d['share_not_worse']:.0%} of {d['samples']} resamples)")
    if shown_worse:
        return line + f": the refit is shown worse, by more than two runs differ ({MODEL_NOISE})"
    if unknown_worse:
        return line + (f"; its entities hold unknown words {out['refit']['unknown_entity_share']:.0%}"
                       f" of the time vs {out['holdout']['unknown_entity_share']:.0%}: it fires on "
                       "unknown words")
    return line + f": not shown worse than two runs differ ({MODEL_NOISE})"


def unknown_entity_share(model: TrainedModel | Ensemble, texts: Sequence[str],
                         predictions: Sequence[Prediction]) -> float:
    """The share of predicted entities holding a word outside the model's vocabulary (0 for a
    backbone without a word vocabulary)."""
    word_status = model.word_status if isinstance(model, Ensemble) else model.network.backbone.word_status
    total = unknown = 0
    for text, prediction in zip(texts, predictions):
        if not prediction.entities:
            continue
        tokens = tokenize(text)
        status = word_status([t.text for t in tokens]) or [None] * len(tokens)
        for span in prediction.entities:
            total += 1
            unknown += any(status[i] == UNKNOWN for i in token_range(tokens, span))
    return unknown / total if total else 0.0
