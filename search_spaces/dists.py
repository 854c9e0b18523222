"""The distributions a search-space file may use and the check of a ``space`` tree against them
(the file format: :mod:`search_spaces.loader`). No hyperopt here: checking a file needs none."""

from __future__ import annotations

DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "quniform": ("low", "high", "q"),
    "qloguniform": ("low", "high", "q"),
    "randint": ("low", "high"),
    "qrandint": ("low", "high", "q"),
    "choice": ("options",),
    "branch": ("options",),
}
NUMERIC = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "qrandint")
LOG_SCALE = ("loguniform", "qloguniform")


class SearchSpaceError(ValueError):
    """A search-space file is invalid; the message names the file and the key path."""


def validate_mapping(node: dict, path: str, where: str) -> None:
    """Every distribution under ``node`` (key path ``path``) well formed, or a
    ``SearchSpaceError`` naming ``where`` (the file) and the key path."""
    for key, value in node.items():
        if not isinstance(key, str):
            raise SearchSpaceError(f"{where}: {path}.{key}: keys must be strings")
        child = f"{path}.{key}"
        if isinstance(value, dict) and "dist" in value:
            _validate_dist(value, child, where)
        elif isinstance(value, dict):
            validate_mapping(value, child, where)


def _validate_dist(node: dict, path: str, where: str) -> None:
    shown = path.removeprefix("space.")
    kind = node["dist"]
    if kind not in DISTRIBUTIONS:
        raise SearchSpaceError(
            f"{where}: {shown}: unknown distribution {kind!r} "
            f"(known: {', '.join(DISTRIBUTIONS)})"
        )
    expected = DISTRIBUTIONS[kind]
    args = {k: v for k, v in node.items() if k != "dist"}
    for name in expected:
        if name not in args:
            raise SearchSpaceError(f"{where}: {shown}: {kind} needs '{name}'")
    extra = set(args) - set(expected)
    if extra:
        raise SearchSpaceError(
            f"{where}: {shown}: {kind} takes {', '.join(expected)}, not {sorted(extra)[0]!r}"
        )
    if kind in NUMERIC:
        for name in expected:
            value = args[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SearchSpaceError(f"{where}: {shown}.{name}: must be a number, got {value!r}")
        if not args["low"] < args["high"]:
            raise SearchSpaceError(f"{where}: {shown}: low must be below high ({args['low']} >= {args['high']})")
        if kind in LOG_SCALE and args["low"] <= 0:
            raise SearchSpaceError(f"{where}: {shown}.low: must be > 0 for {kind}")
        if "q" in args and args["q"] <= 0:
            raise SearchSpaceError(f"{where}: {shown}.q: must be > 0")
        if kind in ("randint", "qrandint") and not all(isinstance(args[k], int) for k in expected):
            raise SearchSpaceError(f"{where}: {shown}: {kind} bounds must be integers")
    elif kind == "choice":
        if not isinstance(args["options"], list) or not args["options"]:
            raise SearchSpaceError(f"{where}: {shown}.options: must be a non-empty list")
    else:  # branch
        options = args["options"]
        if not isinstance(options, dict) or not options:
            raise SearchSpaceError(
                f"{where}: {shown}.options: must map each value to a mapping (or null)"
            )
        for value, subtree in options.items():
            if subtree is None:
                continue
            if not isinstance(subtree, dict):
                raise SearchSpaceError(
                    f"{where}: {shown}.options.{value}: must be a mapping of keys merged "
                    f"beside '{shown.rsplit('.', 1)[-1]}', or null"
                )
            validate_mapping(subtree, f"{path}={value}", where)
