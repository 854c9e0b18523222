"""``profner combine MODEL_DIR MODEL_DIR ... --out ENSEMBLE_DIR``: trained models as one model.

The members are copied into the ensemble dir as they are (``profner_models.ensemble``); with
``--data`` the ensemble is scored on the dev split every member held out of its training (held-out
runs: ``data.train_on_dev`` false), and that score is its meta.json estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "combine", help="combine trained model dirs into one ensemble model dir",
        description="Combine trained model dirs (seeds of one recipe, a sweep's top trials, "
                    "System 1 with System 2) into one ensemble dir that predict, serve and "
                    "register take like any model dir.")
    parser.add_argument("model_dirs", nargs="+", type=Path, help="two or more model dirs")
    parser.add_argument("--out", type=Path, required=True, help="ensemble dir to write")
    parser.add_argument("--method", choices=("posterior", "vote"), default="posterior",
                        help="average the members' tag and 7a probabilities (default), or vote "
                             "on spans")
    parser.add_argument("--weights", type=_weights, default=None, metavar="W,W,...",
                        help="one positive weight per member (default: equal)")
    parser.add_argument("--roles", type=_roles, default=None, metavar="R,R,...",
                        help="posterior: per member, the outputs it contributes: 'all', or head "
                             "roles joined by '+' (ProfNER: tag, classify; MEDDOPROF: tag, cls), "
                             "e.g. all,tag (default: all for every member)")
    parser.add_argument("--entity-threshold", type=float, default=0.5,
                        help="posterior: a word leaves O when its averaged entity probability "
                             "passes this (default 0.5)")
    parser.add_argument("--min-votes", type=int, default=None,
                        help="vote: members that must predict a span (default: a majority)")
    parser.add_argument("--data", type=Path, default=None,
                        help="corpus root: score the ensemble on the dev split its members held "
                             "out (held-out runs only) and keep that as its estimate")
    parser.set_defaults(func=run)


def _weights(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated numbers, e.g. 1,1,2") from None


def _roles(text: str) -> list[list[str] | None]:
    members = text.split(",")
    if any(not part or any(not role for role in part.split("+")) for part in members):
        raise argparse.ArgumentTypeError(f"{text!r}: one entry per member, 'all' or roles joined "
                                         f"by '+', e.g. all,tag or tag+cls,tag")
    return [None if part == "all" else part.split("+") for part in members]


def run(args: argparse.Namespace) -> int:
    from profner_models import ensemble
    from profner_models.unseen import combined_estimate

    if not 0 < args.entity_threshold < 1:
        print(f"profner combine: --entity-threshold {args.entity_threshold}: must lie in (0, 1)",
              file=sys.stderr)
        return 2
    problem = _out_problem(args.out, args.model_dirs)
    if problem:
        print(f"profner combine: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        combined, metas = ensemble.combine(args.model_dirs, args.method, args.weights,
                                           args.entity_threshold, args.min_votes, args.roles,
                                           keep_states=args.data is not None)
        unseen = {}
        if args.data is not None:
            estimates = [meta.get("unseen", {}).get("estimate")
                         or {"metrics": meta.get("metrics", {})} for meta in metas]
            unseen["estimate"] = combined_estimate(combined, estimates, args.data)
            combined.metrics = unseen["estimate"]["metrics"]
    except (ValueError, FileNotFoundError) as error:  # ModelDirError, ConfigError, CorpusError
        print(f"profner combine: {error}", file=sys.stderr)
        return 1
    source = {"combined_from": [str(path.resolve()) for path in args.model_dirs],
              "data": str(args.data) if args.data else None}
    ensemble.save(combined, args.out, member_meta=[_fit_part(meta) for meta in metas],
                  extra_meta={"source": source, "unseen": unseen})
    print(json.dumps({"model_dir": str(args.out), "members": len(metas), "method": combined.method,
                      "parameters": combined.num_parameters, "unseen": unseen}, indent=1))
    return 0


def _out_problem(out: Path, model_dirs: list[Path]) -> str | None:
    """Why writing the ensemble to ``out`` would lose something (saving replaces the dir), or
    None: ``out`` holds a member, or is a dir with files that is not an earlier ensemble."""
    from profner_models.ensemble import is_ensemble_dir

    target = out.resolve()
    if any(target == path.resolve() or target in path.resolve().parents for path in model_dirs):
        return "holds one of the members; writing there would replace it"
    if target.is_dir() and any(target.iterdir()) and not is_ensemble_dir(target):
        return "exists and is not an ensemble dir; not overwritten (give a new or empty dir)"
    return None


def _fit_part(meta: dict) -> dict:
    """What a member's meta.json says of its fit, kept in its copy."""
    return {key: meta[key] for key in ("source", "best_epoch", "device", "recipe", "history",
                                       "unseen") if key in meta}
