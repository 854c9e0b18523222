"""``profner serve MODEL_REF``: put a trained model behind a Ray Serve HTTP endpoint.

Blocking by default (Ctrl-C or SIGTERM shuts Serve and Ray down); ``--detach`` returns once the
server answers and prints its URL; ``profner serve --stop [--port P]`` stops detached (or
foreground) servers started on this machine by this user.

Ray, torch and the server parts are imported when the command runs, not when ``profner`` lists
its commands (every invocation registers this plugin).
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_PORT = 8000
# The ServeSettings fields that are options of the command: flag, type, default and help come
# from the schema (serve/schemas.py), the one place they are written.
SETTINGS_OPTIONS = ("replicas", "num_cpus", "num_gpus", "max_batch_size", "batch_wait_ms",
                    "request_timeout_s", "long_text_chars", "max_texts", "max_chars",
                    "tracking_uri", "access_log")
# The command's own options: (flag, type, default, help); also replayed to a --detach child.
_OPTIONS: list[tuple[str, type, object, str]] = [
    ("--host", str, "127.0.0.1", "interface to bind (default 127.0.0.1: this machine only)"),
    ("--port", int, None, f"HTTP port (default {DEFAULT_PORT}; with --stop: only this one)"),
    ("--ray-temp-dir", str, None, "Ray temp dir of the local instance "
                                  "(default <tmp>/profner-serve-<port>)"),
    ("--ray-address", str, None, "deploy onto this running Ray cluster instead of a new local "
                                 "one (if Serve already runs there, its HTTP host/port apply)"),
]


def _all_options() -> list[tuple[str, type, object, str]]:
    from serve.schemas import ServeSettings  # pydantic only: help stays fast

    fields = ServeSettings.model_fields
    from_schema = [(f"--{name.replace('_', '-')}", _plain_type(fields[name].annotation),
                    fields[name].default, (fields[name].description or "")
                    + ("" if fields[name].default is None else f" (default {fields[name].default})"))
                   for name in SETTINGS_OPTIONS]
    return [*_OPTIONS[:2], *from_schema, *_OPTIONS[2:]]


def _plain_type(annotation: object) -> type:
    """``int`` of ``int``, ``str`` of ``str | None``."""
    return next(t for t in getattr(annotation, "__args__", (annotation,)) if t is not type(None))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a trained model over HTTP with Ray Serve",
        description="Serve MODEL_REF (a model dir, runs:/<run_id>/<path>, "
                    "models:/<name>/<version> or sweep:<name>) at POST /predict, GET /health, GET /model "
                    "(OpenAPI docs at /docs).")
    parser.add_argument("model_ref", nargs="?", metavar="MODEL_REF")
    for flag, kind, default, text in _all_options():
        if kind is bool:  # --access-log / --no-access-log
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--detach", action="store_true",
                        help="run in the background; return once ready and print the URL")
    parser.add_argument("--stop", action="store_true",
                        help="stop servers started by profner serve (all, or --port's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from serve import runner, servers

    if args.stop:
        return _stop(args.port)
    if not args.model_ref:
        print("profner serve: MODEL_REF is required (or --stop)", file=sys.stderr)
        return 2
    port = args.port or DEFAULT_PORT
    if args.detach:  # the child checks MODEL_REF; its error comes back with its log
        if runner.held_by_time_wait(args.host, port):  # the child waits; say why here
            print(runner.time_wait_note(port), file=sys.stderr)
        try:
            entry = servers.spawn_detached(_replay(args, port), port)
        except (RuntimeError, TimeoutError) as error:
            print(f"profner serve: {error}", file=sys.stderr)
            return 1
        print(f"profner serve: running in the background (pid {entry.pid}, log {entry.log}); "
              f"`profner serve --stop --port {port}` stops it", file=sys.stderr)
        print(entry.url, flush=True)
        return 0
    try:
        settings = _settings(args)
    except (ValueError, OSError) as error:
        print(f"profner serve: {error}", file=sys.stderr)
        return 2
    try:
        return runner.serve_forever(settings, args.host, port, args.ray_temp_dir, args.ray_address)
    except (OSError, TimeoutError, RuntimeError) as error:
        print(f"profner serve: {error}", file=sys.stderr)
        return 1


def _settings(args: argparse.Namespace):
    """Resolve MODEL_REF and load the model once here, so a bad reference fails in seconds
    with the file at fault instead of in a replica that Serve keeps restarting."""
    from pydantic import ValidationError

    from profner_models.predict import load_model
    from serve.resolve import resolve
    from serve.schemas import ServeSettings

    resolved = resolve(args.model_ref, args.tracking_uri)
    load_model(resolved.model_dir)
    if args.num_gpus > 0:
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--num-gpus {args.num_gpus}: torch sees no CUDA device here")
    try:
        return ServeSettings(model=str(resolved.model_dir), source=resolved.source,
                             **{name: getattr(args, name) for name in SETTINGS_OPTIONS})
    except ValidationError as error:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                             for e in error.errors())
        raise ValueError(problems) from None


def _replay(args: argparse.Namespace, port: int) -> list[str]:
    """The same serve command without --detach, for the background child."""
    argv = ["serve", args.model_ref]
    for flag, _kind, _default, _text in _all_options():
        value = port if flag == "--port" else getattr(args, flag[2:].replace("-", "_"))
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _stop(port: int | None) -> int:
    from serve import servers

    found = servers.running(port)
    if not found:
        where = f" on port {port}" if port else ""
        print(f"profner serve --stop: no running server{where}")
        return 0
    status = 0
    for entry in found:
        if servers.stop_running(entry):
            starting = "" if entry.ready else ", still starting"
            print(f"stopped {entry.url} (pid {entry.pid}, {entry.model}{starting})")
        else:
            print(f"profner serve --stop: pid {entry.pid} at {entry.url} did not stop within "
                  f"{servers.STOP_TIMEOUT_S:.0f} s", file=sys.stderr)
            status = 1
    return status
