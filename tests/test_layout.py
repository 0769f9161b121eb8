"""The package's shape: a few modules at the top, layers that only look down, and no import cycle.

Imports are read from the source (``ast``), those inside functions included, so a
cycle hidden in a function-level import counts too, and so do imports under
``if TYPE_CHECKING:`` (they never run, but a type-only cycle is still two modules that
need each other). The layers are ``hpcars.layers.LAYERS``, written down once.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where each importable package's source lies (jobs/ and analysis/ install as hpcars.jobs, hpcars.analysis)
SOURCES = {"hpcars": ROOT / "hpcars", "hpcars.jobs": ROOT / "jobs", "hpcars.analysis": ROOT / "analysis"}
FOLDERS = {"algorithm", "runtime", "tasks", "population", "run", "cli", "baselines", "presets"}


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


def imports(name: str, path: Path, known: dict[str, Path], type_only: bool = True) -> set[str]:
    """The hpcars modules ``name`` imports, anywhere in its file (``type_only``: those under
    ``if TYPE_CHECKING:`` too)."""
    tree = ast.parse(path.read_text())
    skipped = set() if type_only else _type_checking_lines(tree)
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


def test_no_import_cycle_not_even_a_type_only_one():
    assert cycles(import_graph()) == []


def test_layers_only_look_down():
    """No module imports one of a higher layer (``hpcars.layers``), function-level imports included."""
    from hpcars.layers import LAYERS, layer_of

    graph = import_graph()
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_every_module_is_in_a_layer_and_the_checker_sees_an_upward_import():
    from hpcars.layers import layer_of

    for name in modules():
        layer_of(name)  # ValueError for a module in none
    assert layer_of("hpcars.run.engine") > layer_of("hpcars.tasks.base") > layer_of("hpcars.algorithm.noise")
    assert layer_of("hpcars") > layer_of("hpcars.cli.train")  # the package's door is above everything it opens


def test_errors_come_from_hpcars_errors_only():
    """An error is imported from ``hpcars.errors`` itself, never through a module that re-exports it."""
    import hpcars.errors as errors

    names = {
        n for n in dir(errors) if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), BaseException)
    }
    through = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("hpcars")
                and node.module != "hpcars.errors"
            ):
                through += [f"{name}: {a.name} from {node.module}" for a in node.names if a.name in names]
    assert through == []


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
    assert folders == FOLDERS


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


#: classes over 200 lines and functions over 60 in hpcars/, each with why (none today)
SIZE_EXCEPTIONS: dict[str, str] = {}


def test_no_class_over_200_lines_and_no_function_over_60():
    too_long = []
    for name, path in modules().items():
        if not name.startswith("hpcars.") and name != "hpcars":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                limit = 200 if isinstance(node, ast.ClassDef) else 60
                where = f"{name}.{node.name}"
                if lines > limit and where not in SIZE_EXCEPTIONS:
                    too_long.append(f"{where}: {lines} lines (at most {limit})")
    assert too_long == []


def test_the_module_table_of_how_it_works_names_every_module_on_disk():
    """docs/how-it-works.md's table: every module of hpcars/, jobs/ and analysis/ is named in it (by its
    file or a folder above it), and every path it names exists."""
    import re

    text = (ROOT / "docs" / "how-it-works.md").read_text()
    table = text[text.index("## Modules") : text.index("\n## ", text.index("## Modules") + 1)]
    named = set(re.findall(r"`((?:hpcars|jobs|analysis|slurm)/[\w/.]*)`", table))
    missing_paths = sorted(p for p in named if not (ROOT / p).exists())
    assert missing_paths == []
    unnamed = []
    for folder in ("hpcars", "jobs", "analysis"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "examples" in relative or path.name == "__init__.py" and relative != "hpcars/__init__.py":
                continue
            folders = [parent.as_posix() + "/" for parent in path.relative_to(ROOT).parents if parent.parts]
            if relative not in named and not any(f in named for f in folders):
                unnamed.append(relative)
    assert unnamed == []


def test_the_readme_layer_table_is_hpcars_layers():
    from hpcars.layers import LAYERS

    rows = ["| layer | modules | what it holds |", "|---|---|---|"]
    rows += [f"| {name} | {', '.join(f'`{m}`' for m in members)} | {what} |" for name, members, what in LAYERS]
    assert "\n".join(rows) in (ROOT / "README.md").read_text()
