"""The ``profner`` console command.

Sub-commands are discovered through the ``profner.commands`` entry-point group (see
pyproject.toml): each entry is a ``register(subparsers)`` function. This keeps the library
free of Ray (``profner tune`` lives in ``trainables``, ``profner serve`` in ``serve``) and lets
a plugin package add commands without touching this file.

A command module imports only what its parser needs at its top; the command imports its stack
(torch, spaCy, Ray, MLflow, hyperopt) when it runs. So ``profner --help`` and argument errors
answer at once, and a command whose dependency is missing says which, while the others work.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Sequence

from profner_models import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profner", description="Find, tune and serve occupation detectors for Spanish text."
    )
    parser.add_argument("--version", action="version", version=f"profner-hpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for entry in sorted(entry_points(group="profner.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as error:
            _register_broken(subparsers, entry.name, error)
        else:
            register(subparsers)
    return parser


def _register_broken(subparsers: argparse._SubParsersAction, name: str, error: ImportError) -> None:
    """Keep the other commands usable when one command's dependencies fail to import."""
    parser = subparsers.add_parser(name, help=f"(unavailable: {error})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(_args: argparse.Namespace) -> int:
        print(f"profner {name}: cannot load this command: {error}", file=sys.stderr)
        return 2

    parser.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; its ``func(args)`` returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as error:  # a command imports its stack when it runs
        print(f"profner {args.command}: needs the Python module {error.name!r}, which is not "
              f"installed here ({error})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
