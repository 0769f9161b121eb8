"""The wheel: built from the checkout, installed into a fresh venv, used from elsewhere.

The fresh venv gets only the hpcars wheel; its heavy dependencies (torch, MPI,
Gymnasium, ...) are borrowed from the test's own environment by a path entry
placed *after* the venv's site-packages, so whatever hpcars code runs comes from
the wheel. Commands run from a directory outside the checkout, with a bare PATH.
"""

from __future__ import annotations

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
        assert _run([python, "-c", f"import {generic}"], work).returncode != 0
    for module in ("hpcars.train", "hpcars.inspect", "hpcars.jobs.sweep", "hpcars.analysis.report"):
        assert _run([python, "-m", module, "--help"], work).returncode == 0, module
    trained = _run([str(bin_dir / "hpcars-train"), "--iterations", "3", "--run-dir", "r"], work)
    assert trained.returncode == 0, trained.stderr
    assert "params_sha256" in trained.stdout and (work / "r" / "summary.json").exists()
    inspected = _run([str(bin_dir / "hpcars-inspect"), "r"], work)
    assert inspected.returncode == 0 and "params_sha256" in inspected.stdout
