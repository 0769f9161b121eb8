"""Provenance: hpcars' version, and the software a run was made with, in every file it writes."""

import importlib.metadata
import json
import subprocess
import sys
import tomllib

import h5py
import pytest

import hpcars
from hpcars.run import provenance
from tests.conftest import ROOT, checkpoint_file, inspect_json, run_cli, run_train

#: what every record must name, with a version (the dev extra installs them all)
REQUIRED = (
    "hpcars",
    "python",
    "torch",
    "numpy",
    "mpi4py",
    "mpi_library",
    "gymnasium",
    "mujoco",
    "transformers",
    "tokenizers",
)
#: the machine every record must name (no GPU here)
MACHINE = ("cpu", "cpu_capability", "blas")


def test_version_comes_from_the_metadata_else_from_pyproject(monkeypatch):
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert hpcars.__version__ == importlib.metadata.version("hpcars") == declared

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    from hpcars.version import version

    assert version.__wrapped__() == declared


def test_importing_hpcars_has_no_side_effects():
    script = (
        "import os, sys, threading; before = dict(os.environ); "
        "import hpcars, hpcars.run.provenance; "
        "assert dict(os.environ) == before, 'environment changed'; "
        "assert threading.active_count() == 1, 'a thread was started'; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'mpi4py', 'h5py')); "
        "assert not heavy, heavy; "
        "print(hpcars.__version__)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hpcars.__version__


def _check(record, where):
    assert isinstance(record, dict), f"{where}: no provenance"
    for name in REQUIRED:
        assert isinstance(record.get(name), str) and record[name], f"{where}: no {name} version in {record}"
    assert record["hpcars"] == hpcars.__version__, where
    assert record["torch"] == importlib.metadata.version("torch"), where
    assert record["numpy"] == importlib.metadata.version("numpy"), where
    assert record["mpi4py"] == importlib.metadata.version("mpi4py"), where
    assert record["gymnasium"] == importlib.metadata.version("gymnasium"), where
    assert record["mujoco"] == importlib.metadata.version("mujoco"), where
    for name in MACHINE:
        assert isinstance(record.get(name), str) and record[name], f"{where}: no {name} in {record}"
    import torch

    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability(), where
    assert record["gpu"] is None, where
    assert "\t" not in record["mpi_library"] and "  " not in record["mpi_library"], record["mpi_library"]
    if (ROOT / ".git").exists():  # run from this checkout: its commit
        assert (record.get("git_commit") or "").split("+")[0] == provenance._git_commit().split("+")[0], where


def test_run_files_record_provenance_and_a_changed_resume_warns_once(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # a process of its own, as a job runs: mpi4py.MPI is loaded there, so the MPI library is recorded
    done = run_cli(["--iterations", "2", "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr

    _check(json.loads((run_dir / "config.json").read_text()).get("provenance"), "config.json")
    _check(json.loads((run_dir / "summary.json").read_text()).get("provenance"), "summary.json")
    path = checkpoint_file(run_dir)
    with h5py.File(path, "r") as f:
        saved = json.loads(f.attrs["provenance"])
    _check(saved, "checkpoint attribute")

    # hpcars-inspect: --json carries it, the text names every version
    assert inspect_json(run_dir)["provenance"] == saved
    from hpcars.cli.inspect import main as inspect_main

    assert inspect_main([str(path)]) == 0
    text = capsys.readouterr().out
    line = next((x for x in text.splitlines() if x.startswith("software: ")), None)
    assert line is not None, text
    for name in REQUIRED:
        assert saved[name] in line, (name, line)
    machine = next((x for x in text.splitlines() if x.startswith("machine: ")), None)
    assert machine == (
        f"machine: cpu {saved['cpu']}  cpu capability {saved['cpu_capability']}  BLAS {saved['blas']}"
    ), text
    assert "differs from this machine" not in text

    # the checkpoint says another torch made it: resuming says so in one line, and goes on
    edited = {**saved, "torch": "0.0.1-edited"}
    with h5py.File(path, "r+") as f:
        f.attrs["provenance"] = json.dumps(edited)
    resumed = run_train(["--resume", str(run_dir), "--iterations", "3"])
    assert resumed.returncode == 0, resumed.stderr
    warnings = resumed.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("hpcars.train: warning: "), resumed.stderr
    now = importlib.metadata.version("torch")
    assert f"torch 0.0.1-edited -> {now}" in warnings[0], warnings[0]
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 3
    # the new checkpoint records the software that wrote it
    with h5py.File(checkpoint_file(run_dir), "r") as f:
        assert json.loads(f.attrs["provenance"])["torch"] == now


@pytest.mark.parametrize("record", [None, {}])
def test_inspect_says_when_nothing_is_recorded(record):
    from hpcars.cli.inspect import describe_provenance

    assert describe_provenance(record) == "not recorded"
    assert provenance.differences(record, provenance.versions()) == []


def test_a_resume_and_a_replay_on_another_kind_of_machine_warn_in_one_line(tmp_path, capsys):
    """The checkpoint says another CPU capability and BLAS made it: bits may differ, and every
    continuation says so in one line (a resume, a replay); inspect shows it too."""
    run_dir = tmp_path / "run"
    common = ["--schedule", "async", "--directions", "4", "--batch-size", "256", "--checkpoint-every", "2"]
    assert run_train([*common, "--iterations", "2", "--run-dir", str(run_dir)]).returncode == 0
    path = checkpoint_file(run_dir)
    with h5py.File(path, "r+") as f:
        saved = json.loads(f.attrs["provenance"])
        f.attrs["provenance"] = json.dumps({**saved, "cpu_capability": "NEON", "blas": "open"})
    expected = (
        f"on another kind of machine (cpu_capability NEON -> {saved['cpu_capability']}; blas open -> {saved['blas']})"
    )

    from hpcars.cli.inspect import main as inspect_main

    assert inspect_main([str(path)]) == 0
    assert f"differs from this machine (cpu_capability NEON -> {saved['cpu_capability']}" in capsys.readouterr().out

    replayed = run_train(["--replay", str(run_dir)])
    assert replayed.returncode == 0, replayed.stderr  # the same machine made θ: the replay matches
    lines = replayed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcars.train: warning: replaying on another kind of machine"), lines
    assert expected in lines[0] and "bits need not match" in lines[0], lines[0]

    resumed = run_train(["--resume", str(run_dir), "--iterations", "3"])
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcars.train: warning: resuming on another kind of machine"), lines
    assert expected in lines[0], lines[0]


def test_an_old_record_without_the_machine_warns_of_nothing():
    now = provenance.versions()
    old = {k: v for k, v in now.items() if k not in provenance.MACHINE}
    assert provenance.machine_differences(old, now) == [] and provenance.continuation_warning(old, "resuming") is None
    assert provenance.machine_differences({**now, "gpu": "NVIDIA H100"}, now) == ["gpu NVIDIA H100 -> None"]
