"""The package's shape: a few modules at the top, layers below, and no import cycle.

Imports are read from the source (``ast``), those inside functions included, so a
cycle hidden in a function-level import counts too. Imports under ``if TYPE_CHECKING:``
never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where each importable package's source lies (jobs/ and analysis/ install as hpcars.jobs, hpcars.analysis)
SOURCES = {"hpcars": ROOT / "hpcars", "hpcars.jobs": ROOT / "jobs", "hpcars.analysis": ROOT / "analysis"}
LAYERS = {"algorithm", "runtime", "tasks", "population", "run", "cli", "baselines", "presets"}


def modules() -> dict[str, Path]:
    """Every module's dotted name -> its file."""
    found: dict[str, Path] = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            if "examples" in path.relative_to(folder).parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The hpcars modules ``name`` imports, anywhere in its file."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in known:
                    out.add(target)
                elif base in known:
                    out.add(base)
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_function_level_imports_count(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from hpcars.run import engine\n")
    known = {"hpcars.run.engine": Path(), "hpcars.run": Path(), "hpcars.m": source}
    assert imports("hpcars.m", source, known) == {"hpcars.run.engine"}


def test_a_dozen_modules_at_the_top_and_the_rest_in_layers():
    top = sorted(p.name for p in (ROOT / "hpcars").glob("*.py"))
    assert len(top) <= 12, top
    folders = {p.name for p in (ROOT / "hpcars").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == LAYERS


def test_errors_import_nothing_of_hpcars():
    known = modules()
    assert imports("hpcars.errors", known["hpcars.errors"], known) == set()


def test_old_doors_and_public_names_still_work():
    import importlib
    import tomllib

    import hpcars

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target
    train = importlib.import_module("hpcars.train")
    assert train.run is importlib.import_module("hpcars.cli.train").run  # old names through the door
    assert importlib.import_module("hpcars.checkpoint").read is importlib.import_module("hpcars.run.checkpoint").read
    for name in hpcars.__all__:
        assert getattr(hpcars, name) is not None
    assert {"fit", "ARS", "Result", "pin_threads", "SupervisedProblem", "Objective"} <= set(hpcars.__all__)
