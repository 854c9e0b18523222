"""``profner tune``, ``refit``, ``register`` and ``ui`` (registered from one entry point).

The commands import the Ray side (``trainables.runner`` and friends) when they run, not when
``profner`` lists its commands: every ``profner`` invocation registers this plugin, and
``profner train`` or ``predict`` should not pay for importing Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_tune(subparsers)
    _register_refit(subparsers)
    _register_register(subparsers)
    _register_ui(subparsers)


def _register_tune(subparsers: argparse._SubParsersAction) -> None:
    from search_spaces import shipped_spaces

    p = subparsers.add_parser(
        "tune", help="hyperparameter + architecture search (hyperopt TPE + ASHA on Ray Tune)",
        description=f"Run a sweep over a search-space file (or shipped study: "
                    f"{', '.join(shipped_spaces())}); every trial is an MLflow run under one "
                    f"parent run.")
    p.add_argument("space", help="search-space YAML file or shipped study name")
    p.add_argument("--data", default=None, help="corpus dir (default: the bundled sample)")
    p.add_argument("--num-samples", type=int, default=8, help="trials (default 8)")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials at once (default 2)")
    p.add_argument("--address", default=None,
                   help="existing Ray cluster (ray://… or host:port); default: a private local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions allowed (0.5)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--metric", default=None, help="metric to optimise (default: the space's, f1_7b)")
    p.add_argument("--mode", choices=["max", "min"], default=None)
    p.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a stop")
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA reduction factor")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha",
                   help="asha (default) stops weak trials early; fifo runs every trial fully")
    p.add_argument("--n-initial-points", type=int, default=None,
                   help="random trials before TPE (default: num-samples/4 within [3, 20])")
    p.add_argument("--seed", type=int, default=13, help="searcher seed (reproducible sweeps)")
    p.add_argument("--max-failures", type=int, default=0,
                   help="retries of a failed trial, continued from its last checkpoint")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep (--name, or the study's latest)")
    p.add_argument("--name", default=None, help="sweep name (default <study>-<time>)")
    p.add_argument("--storage", default="ray_results", help="dir holding sweeps (shared on a cluster)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default profner-<study>)")
    p.add_argument("--export", default=None, metavar="MODEL_DIR",
                   help="write the best trial's model dir here")
    p.add_argument("--export-frontier", default=None, metavar="DIR",
                   help="write the Pareto-optimal trials (metric vs latency per tweet) here")
    p.add_argument("--narrow-from", default=None, metavar="RUN",
                   help="first narrow SPACE around the best trials of a finished sweep (sweep "
                        "dir or MLflow parent run id) and tune the narrowed space")
    p.add_argument("--narrow-out", default=None,
                   help="where the narrowed space goes (default <storage>/<study>_narrow.yaml)")
    p.add_argument("--top-fraction", type=float, default=0.25,
                   help="with --narrow-from: the top quantile of trials kept")
    p.add_argument("--ray-temp-dir", default=None, help="temp dir of the local Ray")
    p.add_argument("--no-report", action="store_true", help="skip the report plots")
    p.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from search_spaces import SearchSpaceError
    from trainables.runner import SweepInterrupted, SweepOptions, run_sweep

    space = args.space
    try:
        if args.narrow_from:
            from trainables.narrow import narrow_from_run

            out = Path(args.narrow_out) if args.narrow_out else None
            space = str(narrow_from_run(args.narrow_from, space, out=out, storage=args.storage,
                                        top_fraction=args.top_fraction,
                                        tracking_uri=args.tracking_uri))
            print(f"narrowed search space written to {space}")
        options = SweepOptions(
            space=space, data_dir=args.data, num_samples=args.num_samples,
            max_concurrent=args.max_concurrent, address=args.address, num_cpus=args.num_cpus,
            gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
            metric=args.metric, mode=args.mode, grace_period=args.grace_period,
            reduction_factor=args.reduction_factor, n_initial_points=args.n_initial_points,
            seed=args.seed, resume=args.resume, name=args.name, storage=args.storage,
            tracking_uri=args.tracking_uri, experiment=args.experiment, export=args.export,
            export_frontier=args.export_frontier,
            report=not args.no_report, ray_temp_dir=args.ray_temp_dir,
            scheduler=args.scheduler, max_failures=args.max_failures)
        result = run_sweep(options)
    except (SearchSpaceError, FileExistsError, FileNotFoundError, LookupError) as error:
        print(f"profner tune: {error}", file=sys.stderr)
        return 2
    except SweepInterrupted as error:
        print(f"profner tune: {error}", file=sys.stderr)
        return 130
    from trainables.tracking import ui_links

    print(f"sweep: {result.sweep_dir}")
    print(f"MLflow: {result.tracking_uri} parent run {result.parent_run_id}")
    for what, link in ui_links(result.tracking_uri, result.experiment_id,
                               result.parent_run_id).items():
        print(f"MLflow UI, {what}: {link}")
    states = list(result.trial_states.values())
    print(f"trials: {len(states)} ({result.num_errors} errored)")
    if result.best_trial_id:
        print(f"best trial {result.best_trial_id}: {result.metric}={result.best_value:.4f} (on "
              f"the dev split it was selected on: optimistic, not a test figure)")
        print(f"best config: {result.best_config}")
        print(f"model version: {result.model_version}")
    if result.exported:
        print(f"exported model dir: {result.exported}")
    if result.frontier:
        print(f"frontier (Pareto-optimal trials): {result.frontier}")
    for path in result.report_files:
        print(f"report: {path}")
    return 0 if result.best_trial_id else 1


def _register_refit(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "refit", help="seed sweep of a sweep's best configs, then refit on train+dev",
        description="Take the best trial (or --top-k trials) of a finished sweep (sweep dir or "
                    "MLflow parent run id), run each with several seeds (robustness, MLflow "
                    "runs), keep the config with the best mean over its seeds, then train its "
                    "best-seed recipe on train+dev for the median best epoch -> a model dir.")
    p.add_argument("run", help="sweep dir or MLflow parent run id")
    p.add_argument("--seeds", type=_at_least_one, default=5)
    p.add_argument("--top-k", type=_at_least_one, default=1, metavar="K",
                   help="run the sweep's K best configs over the seeds; keep the best mean")
    p.add_argument("--out", required=True, metavar="MODEL_DIR")
    p.add_argument("--data", default=None, help="corpus dir (default: the sweep's)")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--storage", default="ray_results")
    p.add_argument("--address", default=None)
    p.add_argument("--num-cpus", type=int, default=None)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument("--ray-temp-dir", default=None, help="temp dir of the local Ray")
    p.set_defaults(func=_refit)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def _refit(args: argparse.Namespace) -> int:
    from trainables.refit import RefitOptions, refit

    try:
        result = refit(RefitOptions(
            run=args.run, seeds=args.seeds, top_k=args.top_k, out=args.out, data_dir=args.data,
            tracking_uri=args.tracking_uri, storage=args.storage, address=args.address,
            num_cpus=args.num_cpus, max_concurrent=args.max_concurrent,
            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
            ray_temp_dir=args.ray_temp_dir))
    except (FileNotFoundError, LookupError) as error:
        print(f"profner refit: {error}", file=sys.stderr)
        return 2
    for candidate in result.candidates if len(result.candidates) > 1 else []:
        print(f"config {candidate['rank']} of the sweep: {result.metric} mean "
              f"{candidate['mean']:.4f} ± {candidate['std']:.4f} over "
              f"{len(candidate['best_per_seed'])} seeds")
    print(f"seed sweep: {result.metric} mean {result.mean:.4f} ± {result.std:.4f} over "
          f"{len(result.per_seed)} seeds {result.per_seed} (the sweep's config {result.rank})")
    print(f"refit on train+dev: seed {result.seed}, {result.epochs} epochs -> {result.model_dir}")
    estimate = result.unseen["estimate"]
    print(f"unseen-text estimate ({estimate['from']}, {estimate['dev_docs']} dev documents): "
          f"{result.metric} {estimate['metrics'].get(result.metric, float('nan')):.4f}")
    print(f"check on text neither model saw: {result.unseen['check'].get('verdict') or json.dumps(result.unseen['check'])}")
    for what, link in result.links.items():
        print(f"MLflow UI, {what}: {link}")
    if not result.passed:
        print("profner refit: the refit fails its check: not registered", file=sys.stderr)
        return 3
    return 0


def _register_register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "register", help="log a model or ensemble dir to MLflow and register a version",
        description="One MLflow run for a model dir (an ensemble's run with a child run per "
                    "member): config, metrics, the unseen-text estimate; the dir logged as a "
                    "pyfunc model and registered as a new version of NAME.")
    p.add_argument("model_dir", type=Path, help="a model dir or an ensemble dir")
    p.add_argument("--name", default=None, help="registered model name (default "
                                                "profner-<dir name>)")
    p.add_argument("--tracking-uri", default=None, help="default sqlite:///<cwd>/mlflow.db")
    p.add_argument("--experiment", default="profner-models")
    p.set_defaults(func=_register)


def _register(args: argparse.Namespace) -> int:
    from trainables.register import register

    try:
        done = register(args.model_dir, args.name, args.tracking_uri, args.experiment)
    except (FileNotFoundError, ValueError) as error:
        print(f"profner register: {error}", file=sys.stderr)
        return 2
    members = f", {len(done.member_run_ids)} member runs" if done.member_run_ids else ""
    print(f"registered {done.name} version {done.version} (run {done.run_id}{members})")
    print(f"serve it: profner serve models:/{done.name}/{done.version}")
    for what, link in done.links.items():
        print(f"MLflow UI, {what}: {link}")
    return 0


def _register_ui(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="the MLflow UI over the sweeps' store (127.0.0.1)")
    p.add_argument("--tracking-uri", default=None, help="default sqlite:///<cwd>/mlflow.db")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=_ui)


def _experiments(uri: str) -> list[tuple[str, str]]:
    """The store's experiments (newest first), for direct links; none if it cannot be read."""
    from trainables.tracking import client

    try:
        found = client(uri).search_experiments(order_by=["last_update_time DESC"], max_results=10)
    except Exception:  # a store MLflow cannot open: the UI will say why
        return []
    return [(e.experiment_id, e.name) for e in found if e.name != "Default"]


def _ui(args: argparse.Namespace) -> int:
    from trainables.tracking import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    mlflow = shutil.which("mlflow", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                           os.environ.get("PATH", "")]))
    if mlflow is None:
        print("profner ui: the mlflow command is not installed", file=sys.stderr)
        return 2
    command = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host,
               "--port", str(args.port)]
    if uri.startswith("sqlite:///"):
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
        command += ["--default-artifact-root", artifacts.resolve().as_uri()]
    print(f"MLflow UI on http://{args.host}:{args.port} ({uri})", flush=True)
    for experiment_id, name in _experiments(uri):
        print(f"  {name}: http://{args.host}:{args.port}/#/experiments/{experiment_id}"
              f"?workflowType=machine_learning", flush=True)
    os.execv(command[0], command)  # the UI replaces this process: signals reach it directly
    return 0
