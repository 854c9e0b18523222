"""``profner train CONFIG --data DIR --out MODEL_DIR``: fit a model from a config and save it."""

from __future__ import annotations

from profner_models import artifacts
import argparse
import json
import os
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a model from a config and save it")
    parser.add_argument("config", help="a config YAML path, or a shipped config name (e.g. rnn)")
    parser.add_argument("--data", type=Path, default=None,
                        help="corpus root (default: the bundled sample corpus)")
    parser.add_argument("--out", type=Path, required=True, help="model dir to write")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. training.epochs=3 (YAML value)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes for a refit: its held-out run goes in a second one "
                             "(default: 2 where there are 2 cores)")
    parser.set_defaults(func=run)


def load_config(name_or_path: str) -> dict:
    """A YAML file, or ``configs/<name>.yaml`` shipped with the package."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{name_or_path}: no such config file or shipped config ({shipped})")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping")
    return config


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    import yaml

    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return config


def run(args: argparse.Namespace) -> int:
    from profner_models.corpus import CorpusError
    from profner_models.text.gazetteer import GazetteerError
    from profner_models.unseen import train
    from profner_models.vectors import VectorsError

    try:
        config = apply_overrides(load_config(args.config), args.set)
        trained = train(config, args.data, progress=not args.no_progress, jobs=args.jobs)
    except (FileNotFoundError, ValueError, CorpusError, VectorsError, GazetteerError) as error:
        print(f"profner train: {error}", file=sys.stderr)
        return 1
    result = trained.result
    history = result.history
    source = {"config": args.config, "overrides": args.set,
              "data": str(args.data) if args.data else "bundled sample",
              "train_docs": history[0]["train_docs"], "dev_docs": history[0]["dev_docs"]}
    artifacts.save(result.model, args.out, extra_meta={"source": source, "best_epoch": result.best_epoch,
                                            "history": history, "unseen": trained.unseen})
    print(json.dumps({"model_dir": str(args.out), "best_epoch": result.best_epoch,
                      "parameters": result.model.num_parameters, **result.best_metrics,
                      "unseen": trained.unseen}, indent=1))
    if not trained.passed:
        print("profner train: the refit fails its check against the held-out model on unseen "
              "text (see 'unseen.check' above and in meta.json): do not ship it", file=sys.stderr)
        return 3
    return 0
