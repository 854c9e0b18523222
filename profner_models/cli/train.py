"""``profner train CONFIG --data DIR --out MODEL_DIR``: fit a model from a config and save it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config and save it")
    parser.add_argument("config", help="a config YAML path, or a shipped config name (e.g. rnn)")
    parser.add_argument("--data", type=Path, default=None,
                        help="corpus root (default: the bundled sample corpus)")
    parser.add_argument("--out", type=Path, required=True, help="model dir to write")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. training.epochs=3 (YAML value)")
    parser.add_argument("--held-out", type=Path, default=None, metavar="DIR",
                        help="also save the held-out run (an ensemble: the ensemble of its "
                             "members' held-out runs) as a model dir: its dev split is text it "
                             "never learned from, so `profner combine --data` and `profner "
                             "evaluate` can measure mixes on it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for a refit: its held-out run goes in a second one "
                             "(default: 2 where there are 2 cores)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from profner_models.config import apply_overrides, load_config
    from profner_models.corpus import CorpusError
    from profner_models.ensemble import ensemble_block
    from profner_models.text.gazetteer import GazetteerError
    from profner_models.vectors import VectorsError

    try:
        config = apply_overrides(load_config(args.config), args.set)
        _check_held_out(args, config)
        summary, unseen, passed = (_train_ensemble if ensemble_block(config) is not None
                                   else _train_one)(config, args)
    except (FileNotFoundError, ValueError, CorpusError, VectorsError, GazetteerError) as error:
        print(f"profner train: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"model_dir": str(args.out), **summary, "unseen": unseen}, indent=1))
    spread = unseen.get("estimate", {}).get("seeds")
    if spread:
        scores = ", ".join(f"{k} {v:.4f} ± {spread['std'][k]:.4f}"
                           for k, v in spread["mean"].items() if k.startswith("f1_"))
        print(f"profner train: estimate, mean of {len(spread['each'])} held-out runs: {scores}",
              file=sys.stderr)
    checked = unseen.get("check")
    if checked and "verdict" in checked:
        print(f"profner train: check: {checked['verdict']}", file=sys.stderr)
    if not passed:
        print("profner train: the refit fails its check against the held-out model on unseen "
              "text (see 'unseen.check' above and in meta.json): do not ship it", file=sys.stderr)
        return 3
    return 0


def _check_held_out(args: argparse.Namespace, config: dict) -> None:
    """``--held-out`` needs a refit (else ``--out`` is the held-out run) and a dir apart from
    ``--out`` (each save replaces its dir)."""
    if args.held_out is None:
        return
    from profner_models.artifacts import META
    from profner_models.ensemble import ensemble_block
    from profner_models.tasks import validate
    from profner_models.unseen import member_recipes

    first = member_recipes(config)[0] if ensemble_block(config) else validate(config)
    if not first["data"]["train_on_dev"]:
        raise ValueError("--held-out: this config trains no refit (data.train_on_dev false): "
                         "the model in --out is its held-out run")
    out, held = args.out.resolve(), args.held_out.resolve()
    if held == out or out in held.parents or held in out.parents:
        raise ValueError(f"--held-out {args.held_out}: must lie apart from --out {args.out} "
                         f"(saving a model dir replaces it)")
    if held.is_dir() and any(held.iterdir()) and not (held / META).is_file():
        raise ValueError(f"--held-out {args.held_out}: exists and is not a model dir; not "
                         f"overwritten (give a new or empty dir)")


def _held_out_meta(args: argparse.Namespace, member) -> dict:
    """meta.json of a held-out run (``member``: an ``unseen.Trained``): its fit and estimate
    (with ``training.estimate_seeds`` > 1, the mean of its seeds' runs, of which this is the
    first)."""
    holdout = member.holdout
    return {"source": _source(args, holdout.history), "best_epoch": holdout.best_epoch,
            "history": holdout.history, "unseen": {"estimate": member.unseen["estimate"]}}


def _source(args: argparse.Namespace, history: list[dict]) -> dict:
    return {"config": args.config, "overrides": args.set,
            "data": str(args.data) if args.data else "bundled sample",
            "train_docs": history[0]["train_docs"], "dev_docs": history[0]["dev_docs"]}


def _fit_meta(args: argparse.Namespace, trained) -> dict:
    """What a saved model's meta.json says of its fit (``trained``: an ``unseen.Trained``)."""
    result = trained.result
    return {"source": _source(args, result.history), "best_epoch": result.best_epoch,
            "device": result.device, "recipe": result.recipe, "history": result.history,
            "unseen": trained.unseen}


def _train_one(config: dict, args: argparse.Namespace) -> tuple[dict, dict, bool]:
    from profner_models import artifacts
    from profner_models.tasks import validate
    from profner_models.unseen import train

    trained = train(validate(config), args.data, progress=not args.no_progress, jobs=args.jobs)
    result = trained.result
    artifacts.save(result.model, args.out, extra_meta=_fit_meta(args, trained))
    if args.held_out is not None:
        artifacts.save(trained.holdout.model, args.held_out,
                       extra_meta=_held_out_meta(args, trained))
    summary = {"best_epoch": result.best_epoch, "parameters": result.model.num_parameters,
               **result.best_metrics}
    return summary, trained.unseen, trained.passed


def _train_ensemble(config: dict, args: argparse.Namespace) -> tuple[dict, dict, bool]:
    from profner_models import ensemble
    from profner_models.unseen import train_ensemble

    trained = train_ensemble(config, args.data, progress=not args.no_progress, jobs=args.jobs)
    members = [_fit_meta(args, member) for member in trained.members]
    ensemble.save(trained.ensemble, args.out, member_meta=members, extra_meta={
        "source": {**members[0]["source"], "members": len(members)}, "unseen": trained.unseen})
    if args.held_out is not None:
        ensemble.save(trained.held_out, args.held_out,
                      member_meta=[_held_out_meta(args, m) for m in trained.members],
                      extra_meta={"source": {**_source(args, trained.members[0].holdout.history),
                                             "members": len(members)},
                                  "unseen": {"estimate": trained.unseen["estimate"]}})
    summary = {"members": len(members), "method": trained.ensemble.method,
               "parameters": trained.ensemble.num_parameters}
    return summary, trained.unseen, trained.passed
