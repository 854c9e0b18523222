"""Configs: YAML files, ``--set`` overrides, merging, data paths, and the typed schema machinery.

A config is one nested mapping (YAML on disk, JSON in a model dir, a dict in a Tune trial).
Each block has a schema (a pydantic model with the defaults in its fields, as spaCy's registered
functions carry theirs in their signatures): ``check(schema, block, path)`` refuses an unknown or
misspelled key with its key path and the nearest valid name, a bad value with its key path and
the rule it breaks, and returns the block as a plain dict with every default filled in. Configs
stay plain dicts after the check because they travel as JSON (Tune trials, MLflow params, model
dirs); the schemas are the one place their keys, types and defaults are written down. The whole
config is checked by ``tasks.validate`` (each task composes its blocks; registered parts bring
their own schemas, ``registry``).

Relative paths in configs (vector sources, the gazetteer, NORM code lists) resolve against the
data root: ``PROFNER_DATA_DIR``, default ``<repo>/../shared/data``.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path (and the file, if any)."""


class Schema(BaseModel):
    """A config block: unknown keys are refused; ``check`` turns errors into ``ConfigError``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def check(schema: type[Schema], block: Any, path: str = "") -> dict:
    """``block`` validated against ``schema`` as a plain dict with the defaults filled in."""
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {block!r}")
    try:
        return schema.model_validate(block).model_dump()
    except ValidationError as error:
        raise ConfigError(describe(error, schema, path)) from None


def describe(error: ValidationError, schema: type[Schema], path: str) -> str:
    """One line per problem: the key path, what is wrong, the nearest valid key."""
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not str(part).startswith("function-")]
        where = ".".join(filter(None, [path, *loc]))
        if item["type"] == "extra_forbidden":
            known = _fields_at(schema, item["loc"][:-1])
            near = difflib.get_close_matches(str(item["loc"][-1]), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (known: {', '.join(known)})"
            problems.append(f"{where}: unknown key{hint}")
        else:
            problems.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return "; ".join(problems)


def _fields_at(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) schema at ``loc``, for suggestions."""
    current: Any = schema
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# ---- files, overrides, merging ------------------------------------------------------------
def load_config(name_or_path: str | Path) -> dict:
    """A YAML file, or ``configs/<name>.yaml`` shipped with the package (not yet checked)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"{name_or_path}: no such config file or shipped config ({shipped})")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping")
    return config


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``["training.epochs=3", ...]`` set in place (values read as YAML)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a mapping")
            node = child
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({error})") from None
    return config


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` merged in (mappings recursively, the rest replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def data_root() -> Path:
    return Path(os.environ.get("PROFNER_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def resolve_data_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else data_root() / path
