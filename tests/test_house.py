"""The house: rooms import only downwards, the import graph has no cycle, the library never
imports Ray, MLflow or HTTP code, every room says what it holds, and public functions are typed."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "profner_models"

# Bottom to top: a room may import rooms below it, and itself. docs/design.md draws the same.
LAYERS = [
    {"__init__", "documents", "spans", "config", "registry", "sample", "progress", "opcount", "digest",
     "kernels"},
    {"text"},
    {"corpus"},
    {"e5"},
    {"vectors"},
    {"pretrained"},
    {"models"},
    {"norm"},
    {"tasks"},
    {"artifacts", "training", "ensemble"},
    {"predict"},
    {"refit_check"},
    {"unseen"},
    {"cli"},
]
# The drivers beside the library, each module a room. The trial side (``trainable``) sits above
# the driver's MLflow wiring and reports, so they cannot lean on it; both read ``results``.
DRIVER_LAYERS = {
    "trainables": [{"__init__", "results", "mlflow_model"}, {"console", "tracking", "report"},
                   {"trainable"}, {"sweeps", "models"}, {"runner", "register"}, {"narrow", "refit"},
                   {"cli"}],
    "serve": [{"__init__", "schemas", "lanes", "resolve", "servers"}, {"app"}, {"runner"},
              {"cli"}],
}
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
FORBIDDEN = ("ray", "mlflow", "fastapi", "uvicorn", "starlette", "trainables", "serve", "profner_ray")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file (a package by its own name, not ``pkg.__init__``)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports when it runs, at the top or inside functions."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_rooms_import_only_downwards():
    known = modules()
    wrong = []
    for name, path in known.items():
        for target in imports(path, name):
            if target.startswith("profner_models.") and target in known:
                if LEVEL[room(target)] > LEVEL[room(name)]:
                    wrong.append(f"{name} -> {target}")
    assert not wrong, "upward imports:\n" + "\n".join(sorted(wrong))


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: {t for t in imports(path, name) if t in known and t != name}
             for name, path in known.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt])
                                     if nxt in trail else f"cycle via {nxt}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_the_library_never_imports_ray_mlflow_or_http_code():
    offenders = sorted(f"{name} -> {target}" for name, path in modules().items()
                       for target in imports(path, name)
                       if target.split(".")[0] in FORBIDDEN)
    assert not offenders, offenders


@pytest.mark.parametrize("package", sorted(
    {"profner_models"} | {f"profner_models.{p.name}" for p in ROOT.iterdir()
                          if (p / "__init__.py").is_file()}))
def test_every_room_says_what_it_holds(package):
    doc = importlib.import_module(package).__doc__
    assert doc and len(doc.split()) >= 12, f"{package}: its __init__ needs a docstring"


@pytest.mark.parametrize("package", sorted(DRIVER_LAYERS))
def test_the_drivers_rooms_import_only_downwards_without_cycles(package):
    level = {room: n for n, rooms in enumerate(DRIVER_LAYERS[package]) for room in rooms}
    known = modules(REPO / package)
    assert set(map(room, known)) == set(level), f"{package}: every module needs a level"
    wrong = [f"{name} -> {target}" for name, path in known.items()
             for target in imports(path, name)
             if target in known and level[room(target)] > level[room(name)]]
    assert not wrong, "upward imports:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("package", ["profner_models", "trainables", "serve", "search_spaces"])
def test_no_module_or_function_is_too_long(package):
    """Module lines (data files aside: the sample's builder) and function lines, by an ast walk."""
    too_long = []
    for name, path in modules(REPO / package).items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("package", ["profner_models", "trainables", "serve", "profner_ray",
                                     "search_spaces", "bench"])
def test_every_public_function_is_typed(package):
    """Every function or method whose name has no leading underscore (nested ones too) annotates
    its parameters (``self`` and ``cls`` aside) and its return."""
    untyped = []
    for name, path in modules(REPO / package).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
                continue
            arguments = node.args
            params = [a for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                                  *filter(None, (arguments.vararg, arguments.kwarg)))
                      if a.arg not in ("self", "cls")]
            bare = [a.arg for a in params if a.annotation is None]
            if bare or node.returns is None:
                untyped.append(f"{name}:{node.lineno} {node.name}"
                               + (f" ({', '.join(bare)})" if bare else " (return)"))
    assert not untyped, "untyped public functions:\n" + "\n".join(untyped)


def test_git_ignores_no_file_the_project_is_made_of():
    """A clean clone must hold every source file: an ignore rule too wide once kept two modules
    out of a commit (``models/`` matched ``profner_models/models/``) and CI could not import."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", "*.py", "*.yaml",
         "*.json", "*.md", "*.sh", "*.toml", "*.txt", "*.cfg"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    outputs = (".venv/", "runs/", "mlruns/", "models/", ".pytest_cache/", ".ruff_cache/", "build/",
               "dist/", ".cache/")
    ignored = [p for p in listed if p and not p.startswith(outputs) and ".egg-info/" not in p]
    assert not ignored, f"git ignores files of the project (a clean clone lacks them): {ignored}"


def test_every_bench_script_imports(tmp_path):
    """The bench scripts import each other (``from serving import ...``) and no test runs them:
    a name moved out of one once left another unable to start. Each imports here, as
    ``python bench/X.py`` would (bench/ first on the path), in one clean process."""
    names = sorted(p.stem for p in (REPO / "bench").glob("*.py"))
    code = ("import importlib, sys; sys.path.insert(0, 'bench'); "
            f"[importlib.import_module(name) for name in {names!r}]")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
