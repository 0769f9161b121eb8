"""The wheel: built from the checkout, installed into a fresh venv, used from elsewhere.

The fresh venv gets only the hpcars wheel; its heavy dependencies (torch, MPI,
Gymnasium, ...) are borrowed from the test's own environment by a path entry
placed *after* the venv's site-packages, so whatever hpcars code runs comes from
the wheel. Commands run from a directory outside the checkout, with a bare PATH.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPTS = ("hpcars-train", "hpcars-inspect", "hpcars-sweep", "hpcars-report", "hpcars-play", "hpcars-export")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv's bin directory, a work directory outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    # build from a copy: setuptools leaves a build/ folder beside the sources
    source = root / "source"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "sweeps", "__pycache__", "*.egg-info")
    shutil.copytree(ROOT, source, ignore=skip)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = root.glob("hpcars-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"hpcars", wheel.name.rsplit("-", 3)[0] + ".dist-info"}
    assert "hpcars/jobs/examples/regression.toml" in names and "hpcars/presets/halfcheetah.toml" in names
    packaged = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    in_checkout = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "hpcars").rglob("__init__.py")}
    assert in_checkout <= packaged, f"subpackages missing from the wheel: {in_checkout - packaged}"

    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    site = Path(
        subprocess.run(
            [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # dependencies from this environment, searched after the wheel's own files
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "elsewhere"
    work.mkdir()
    return bin_dir, work


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # the MPI library of the borrowed mpich wheel (as a site MPI would be found on a cluster)
    libmpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    env = {"PATH": "/usr/bin:/bin", "MPI4PY_LIBMPI": str(libmpi)}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_show_help(installed, script):
    bin_dir, work = installed
    done = _run([str(bin_dir / script), "--help"], work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_installed_code_comes_from_the_wheel_and_runs(installed):
    bin_dir, work = installed
    python = str(bin_dir / "python")
    where = _run([python, "-c", "import hpcars, hpcars.jobs, hpcars.analysis; print(hpcars.__file__)"], work)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(bin_dir.parent)), where.stdout
    for generic in ("jobs", "analysis"):  # not dropped into site-packages under generic names
        refused = _run([python, "-c", f"import {generic}"], work)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == f"ModuleNotFoundError: No module named '{generic}'"
    for module in ("hpcars.train", "hpcars.inspect", "hpcars.jobs.sweep", "hpcars.analysis.report"):
        assert _run([python, "-m", module, "--help"], work).returncode == 0, module
    trained = _run([str(bin_dir / "hpcars-train"), "--iterations", "3", "--run-dir", "r"], work)
    assert trained.returncode == 0, trained.stderr
    assert "params_sha256" in trained.stdout and (work / "r" / "summary.json").exists()
    inspected = _run([str(bin_dir / "hpcars-inspect"), "r"], work)
    assert inspected.returncode == 0 and "params_sha256" in inspected.stdout


# -- one name for analysis/ and jobs/ ---------------------------------------------------------------
#: the folders the wheel installs as hpcars.analysis and hpcars.jobs (pyproject's package-dir)
RENAMED = {"analysis": "hpcars.analysis", "jobs": "hpcars.jobs"}
_LOADED = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n.split(".")[0] in
                  ("analysis", "jobs") or n.startswith(("hpcars.analysis", "hpcars.jobs"))}))
"""


def _loaded_from_checkout(names: list[str]) -> dict[str, str]:
    """The analysis/jobs modules in ``sys.modules`` (name -> file) of a fresh interpreter that
    imported ``names`` from the repository root, where the bare folder names are importable too."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *names], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _every_module() -> list[str]:
    return [
        f"{RENAMED[folder]}.{path.stem}"
        for folder in RENAMED
        for path in sorted((ROOT / folder).glob("*.py"))
        if path.stem != "__init__"
    ]


def test_analysis_and_jobs_load_once_under_their_canonical_names():
    """Every module of analysis/ and jobs/, imported as hpcars.analysis.* / hpcars.jobs.*,
    comes from the checkout's files and never also as a bare ``analysis``/``jobs`` copy."""
    modules = _every_module()
    assert {"hpcars.analysis.report", "hpcars.analysis.population_study", "hpcars.jobs.sweep"} <= set(modules)
    loaded = _loaded_from_checkout(modules)
    assert set(modules) <= set(loaded)
    assert not [n for n in loaded if n.split(".")[0] in RENAMED], loaded  # no second copy
    for name in modules:
        folder = next(f for f, canonical in RENAMED.items() if name.startswith(canonical + "."))
        assert Path(loaded[name]) == ROOT / folder / f"{name.rsplit('.', 1)[1]}.py"
    # the hazard is real here: the bare name imports the same file again as another module
    both = _loaded_from_checkout(["hpcars.analysis.load", "analysis.load"])
    assert both["analysis.load"] == both["hpcars.analysis.load"]


def test_tests_import_analysis_and_jobs_by_the_canonical_name():
    """A test that imported ``analysis.x`` beside another's ``hpcars.analysis.x`` would hold two
    copies of the module (two sets of globals, classes that are not each other's)."""
    bare = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.keyword) and node.arg == "module" and isinstance(node.value, ast.Constant):
                names = [str(node.value.value)]  # run_cli(..., module="analysis.report")
            else:
                continue
            bare += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in RENAMED]
    assert not bare, bare
