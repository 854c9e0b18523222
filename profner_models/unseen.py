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
   (434 of its 539 false positives on new tweets), shows there: the check fails when the refit
   scores ``CHECK_MARGIN`` below the held-out model or its unknown-word entity share exceeds the
   held-out model's by ``UNKNOWN_MARGIN``. Both results go into the model dir's ``meta.json``
   (``unseen``) and are printed.

With ``data.train_on_dev: false`` the dev split is already held out: its scores are the estimate
and no second run is needed. The held-out run can go in a second process (``jobs=2``), so on a
two-core machine the recipe costs the wall time of the refit alone.
"""

from __future__ import annotations

import copy
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from profner_models import artifacts
from profner_models.corpus import load_corpus, splits_of
from profner_models.documents import Document
from profner_models.models import UNKNOWN, TrainedModel
from profner_models.predict import Predictor
from profner_models.spans import apply_span_policy
from profner_models.tasks import task_of, validate
from profner_models.text.tags import token_range
from profner_models.text.tokenize import tokenize
from profner_models.training import FitResult, fit, load_task_data

CHECK_MARGIN = 0.05
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
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                pending = pool.submit(_fit_and_save, held_config, str(data_dir) if data_dir else None, tmp)
                refit = fit(config, [*train_docs, *dev], dev, progress=progress)
                history, best_epoch, best_metrics = pending.result()
            holdout = FitResult(artifacts.load(tmp), history, best_epoch, best_metrics)
    else:
        holdout = fit(held_config, train_docs, dev, progress=progress)
        refit = fit(config, [*train_docs, *dev], dev, progress=progress)
    check_docs = check_documents(config, [*train_docs, *dev])
    unseen = {"estimate": _estimate(holdout, "held-out run of this recipe (dev split held out)",
                                    last=True),
              "check": check(refit.model, holdout.model, check_docs)}
    return Trained(refit, unseen, holdout)


def holdout_config(config: dict) -> dict:
    """``config`` with the dev split held out; the recipe (epochs, last kept) unchanged."""
    held = copy.deepcopy(config)
    held["data"]["train_on_dev"] = False
    return held


def _fit_and_save(config: dict, data_dir: str | None, out: str) -> tuple[list, int, dict]:
    train_docs, dev = load_task_data(config, data_dir)
    result = fit(config, train_docs, dev, progress=False)
    artifacts.save(result.model, out)
    return result.history, result.best_epoch, result.best_metrics


def _estimate(result: FitResult, source: str, last: bool) -> dict:
    """The dev scores that stand for unseen text: the last epoch's (the refit keeps its last)
    or the selected one's, with the dev split's novelty."""
    row = result.history[-1] if last else {"epoch": result.best_epoch, **result.best_metrics}
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


def check(refit: TrainedModel, holdout: TrainedModel, docs: Sequence[Document]) -> dict:
    """The refit against the held-out model on ``docs`` (module docstring)."""
    if not docs:
        return {"documents": 0, "passed": True, "note": "no check text that neither model saw"}
    task = task_of(refit.config)
    texts = [doc.text for doc in docs]
    out: dict = {"documents": len(docs), "metric": task.metric}
    predictions = {}
    for name, model in (("refit", refit), ("holdout", holdout)):
        predictions[name] = Predictor(model).predict(texts)
        scores = _scores(model, docs)
        out[name] = {task.metric: scores[task.metric],
                     "unknown_entity_share": unknown_entity_share(model, texts, predictions[name])}
    as_gold = [p.as_document(doc.id, doc.text) for doc, p in zip(docs, predictions["holdout"])]
    out["agreement"] = _scores(refit, as_gold)[task.metric]
    refit_score, held_score = out["refit"][task.metric], out["holdout"][task.metric]
    refit_unknown = out["refit"]["unknown_entity_share"]
    held_unknown = out["holdout"]["unknown_entity_share"]
    out["passed"] = bool(refit_score >= held_score - CHECK_MARGIN
                         and refit_unknown <= held_unknown + UNKNOWN_MARGIN)
    return out


def _scores(model: TrainedModel, docs: Sequence[Document]) -> dict[str, float]:
    task = task_of(model.config)
    encoded = [task.encode(doc, model.config, model.labels, model.gazetteer) for doc in docs]
    return task.evaluate(model, docs, encoded)


def unknown_entity_share(model: TrainedModel, texts: Sequence[str], predictions) -> float:
    """The share of predicted entities holding a word outside the model's vocabulary (0 for a
    backbone without a word vocabulary)."""
    backbone = model.network.backbone
    total = unknown = 0
    for text, prediction in zip(texts, predictions):
        if not prediction.entities:
            continue
        tokens = tokenize(text)
        status = backbone.word_status([t.text for t in tokens]) or [None] * len(tokens)
        for span in prediction.entities:
            total += 1
            unknown += any(status[i] == UNKNOWN for i in token_range(tokens, span))
    return unknown / total if total else 0.0
