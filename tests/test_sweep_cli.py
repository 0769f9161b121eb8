"""Sweep and report commands without Slurm: bad paths are one-line errors, exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from hpcars.jobs.spec import load
from tests.conftest import run_cli


def _one_line(done, prefix: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "/tmp"], "/tmp is a directory, not a file"),
        (["submit", "no-such-spec.toml"], "no such file: no-such-spec.toml"),
        (["submit", "regression", "--sweep-dir", "/proc/hpcars", "--executor", "local"], "--sweep-dir: cannot create"),
        (["status", "/tmp"], "/tmp: not a sweep directory (no readable sweep.json)"),
    ],
)
def test_sweep_bad_paths(args, message):
    line = _one_line(run_cli(args, module="hpcars.jobs.sweep"), "hpcars-sweep: error: ")
    assert message in line


def test_sweep_record_that_is_not_json(tmp_path):
    (tmp_path / "sweep.json").write_text("{ not json")
    line = _one_line(run_cli(["status", str(tmp_path)], module="hpcars.jobs.sweep"), "hpcars-sweep: error: ")
    assert "sweep.json: not valid JSON" in line


def test_packaged_examples_load_by_name():
    assert load("regression").name == "regression-step"
    assert len(load("population").runs()) > 1


def test_report_bad_paths(tmp_path):
    line = _one_line(run_cli([str(tmp_path)], module="hpcars.analysis.report"), "hpcars-report: error: ")
    assert line.endswith(f"{tmp_path}: no readable runs")
    assert run_cli(["--iterations", "2", "--run-dir", str(tmp_path / "runs" / "a")]).returncode == 0
    line = _one_line(
        run_cli([str(tmp_path), "--out", "/proc/hpcars/report"], module="hpcars.analysis.report"),
        "hpcars-report: error: ",
    )
    assert "--out: cannot create /proc/hpcars/report" in line


# -- submit: what is checked before anything is queued ----------------------------------------------
TINY_SPEC = 'name = "tiny"\nseeds = {seeds}\n[base]\ntask = "{task}"\niterations = {iterations}\n'


def _spec(path: Path, seeds: str = "[0]", task: str = "regression", iterations: int = 2) -> Path:
    path.write_text(TINY_SPEC.format(seeds=seeds, task=task, iterations=iterations))
    return path


def _sweep(args: list[str], capsys) -> subprocess.CompletedProcess:
    """``hpcars-sweep ARGS`` in this process (no interpreter start-up to pay): a CompletedProcess."""
    from hpcars.jobs.sweep import main

    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


def _wait_until_done(run_dir: Path, timeout: float = 120) -> None:
    from hpcars.jobs.sweep import run_state

    deadline = time.monotonic() + timeout
    while run_state(run_dir)["state"] != "done":
        assert time.monotonic() < deadline, f"{run_dir} not done after {timeout} s"
        time.sleep(0.5)


def test_resubmit_with_another_spec_is_refused(tmp_path, capsys):
    spec, other, sweep = tmp_path / "tiny.toml", tmp_path / "other.toml", tmp_path / "sweep"
    done = _sweep(["submit", _spec(spec), "--sweep-dir", sweep, "--executor", "local"], capsys)
    assert done.returncode == 0, done.stderr
    _wait_until_done(sweep / "runs" / "seed=0")
    record = (sweep / "sweep.json").read_bytes()
    for kwargs, difference in [
        ({"seeds": "[0, 1]"}, "(runs added: seed=1)"),
        ({"seeds": "[1]"}, "(runs added: seed=1; runs removed: seed=0)"),
        ({"iterations": 3}, "(options changed in 1 run(s), e.g. seed=0: --iterations 2 -> 3)"),
    ]:
        for dry_run in ([], ["--dry-run"]):
            args = ["submit", _spec(other, **kwargs), "--sweep-dir", sweep, "--executor", "local", *dry_run]
            line = _one_line(_sweep(args, capsys), "hpcars-sweep: error: ")
            assert f"--sweep-dir: {sweep} holds a sweep of another spec {difference}; re-submit it with" in line
            assert (sweep / "sweep.json").read_bytes() == record  # nothing recorded, nothing queued
            assert sorted(p.name for p in (sweep / "submitit").iterdir()) == ["0"]
    plan = _sweep(["submit", spec, "--sweep-dir", sweep, "--executor", "local", "--dry-run"], capsys)
    assert plan.returncode == 0 and plan.stdout.splitlines()[1:] == ["seed=0: done, skipped"], plan.stdout
    again = _sweep(["submit", spec, "--sweep-dir", sweep, "--executor", "local"], capsys)
    assert again.returncode == 0 and "submitted 0 run(s) (local), 1 already done" in again.stdout
    assert json.loads(record)["argv"] == {"seed=0": ["--task", "regression", "--iterations", "2", "--seed", "0"]}


def test_resubmit_into_a_sweep_json_without_options_checks_the_run_names(tmp_path, capsys):
    """A sweep.json written before the options were recorded stays usable: checked on run names."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    old = {"name": "tiny", "spec": "tiny.toml", "runs": ["seed=0"], "submissions": []}
    (sweep / "sweep.json").write_text(json.dumps(old))
    args = ["submit", _spec(tmp_path / "s.toml", seeds="[0, 2]"), "--sweep-dir", sweep, "--dry-run"]
    line = _one_line(_sweep(args, capsys), "hpcars-sweep: error: ")
    assert line.endswith(
        "holds a sweep of another spec (runs added: seed=2); re-submit it with its own spec "
        "(tiny.toml), or leave out --sweep-dir for a fresh directory"
    )
    args = ["submit", _spec(tmp_path / "s.toml", iterations=5), "--sweep-dir", sweep, "--dry-run"]
    assert _sweep(args, capsys).returncode == 0


@pytest.mark.parametrize(
    "task, message",
    [
        (
            "HalfCheetah-v9",
            "run seed=0: --task: 'HalfCheetah-v9' is not a registered Gymnasium id; registered versions: HalfCheetah-v",
        ),
        ("CartPol-v1", "run seed=0: --task: 'CartPol-v1' is not a registered Gymnasium id"),
        ("no_such_module_hpcars:CartPole-v1", "--task: cannot import 'no_such_module_hpcars' to register CartPole-v1"),
        ("no_such_module_hpcars:make", "--task: no_such_module_hpcars:make: cannot import 'no_such_module_hpcars'"),
        ("tests.no_such_plugin:make", "--task: tests.no_such_plugin:make: cannot import 'tests.no_such_plugin'"),
        # a language task, not a plug-in of a module called "reasoning-gym": refused as the run refuses it
        ("reasoning-gym:chain_sum", "--task: reasoning-gym:chain_sum needs --hf-model"),
    ],
)
def test_submit_refuses_a_task_every_run_would_refuse(tmp_path, capsys, task, message):
    pytest.importorskip("gymnasium")
    spec, sweep = _spec(tmp_path / "s.toml", seeds="[0, 1]", task=task), tmp_path / "sweep"
    line = _one_line(_sweep(["submit", spec, "--sweep-dir", sweep, "--executor", "local"], capsys), "hpcars-sweep: ")
    assert line.startswith("hpcars-sweep: error: run seed=0: --task: ") and message in line
    assert not sweep.exists()


@pytest.mark.parametrize("task", ["CartPole-v1", "tests.plugins_for_tests:sphere", "digits"])
def test_submit_accepts_tasks_that_exist(tmp_path, capsys, task):
    pytest.importorskip("gymnasium")
    done = _sweep(["submit", _spec(tmp_path / "s.toml", task=task), "--dry-run"], capsys)
    assert done.returncode == 0, done.stderr


def test_dry_run_prints_each_run_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh sweep directory would be made here: sweeps/tiny-TIME
    spec = _spec(tmp_path / "tiny.toml", seeds="[3, 4]")
    done = _sweep(["submit", spec, "--dry-run"], capsys)
    assert done.returncode == 0, done.stderr
    header, *runs = done.stdout.splitlines()
    sweep = re.fullmatch(
        r"sweep (sweeps/tiny-\d{8}-\d{6}) \(dry run, nothing submitted or written\): 2 run\(s\) to "
        r"submit \(slurm\)",
        header,
    )
    assert sweep, header
    assert runs == [
        f"seed={s}: python -m hpcars.train --task regression --iterations 2 --seed {s} "
        f"--run-dir {sweep.group(1)}/runs/seed={s}"
        for s in (3, 4)
    ]
    assert list(tmp_path.iterdir()) == [spec]


def test_resubmit_sets_aside_a_run_stopped_before_its_first_checkpoint(tmp_path, capsys):
    """A job killed before its run's first checkpoint leaves files hpcars.train refuses to
    overwrite: the re-submission moves them aside (kept) and runs it again."""
    spec, sweep = _spec(tmp_path / "tiny.toml"), tmp_path / "sweep"
    run_dir = sweep / "runs" / "seed=0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("iteration,score\n1,0.5\n")  # what a killed run leaves
    plan = _sweep(["submit", spec, "--sweep-dir", sweep, "--executor", "local", "--dry-run"], capsys)
    assert "seed=0: started before but has no checkpoint: its directory goes to set-aside/" in plan.stdout
    assert (run_dir / "metrics.csv").exists()  # a dry run moves nothing
    done = _sweep(["submit", spec, "--sweep-dir", sweep, "--executor", "local"], capsys)
    assert done.returncode == 0, done.stderr
    assert f"set aside as {sweep / 'set-aside' / 'seed=0.1'}" in done.stdout
    _wait_until_done(run_dir)
    assert (sweep / "set-aside" / "seed=0.1" / "metrics.csv").read_text() == "iteration,score\n1,0.5\n"


def test_status_where_no_slurm_answers_says_so_once(tmp_path, capsys, monkeypatch):
    """A sweep copied to a machine without Slurm (or read from a login node of another
    cluster): status reads its runs and marks the Slurm jobs unreachable, without asking
    sacct once per job and printing its errors."""
    sweep = tmp_path / "sweep"
    (sweep / "runs" / "seed=0").mkdir(parents=True)
    record = {
        "name": "tiny",
        "runs": ["seed=0", "seed=1"],
        "submissions": [
            {"executor": "slurm", "folder": str(sweep / "submitit" / "0"), "jobs": {"seed=0": "7_0", "seed=1": "7_1"}}
        ],
    }
    (sweep / "sweep.json").write_text(json.dumps(record))
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # no sacct to be found
    done = _sweep(["status", sweep], capsys)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert [row.split()[:2] for row in rows] == [["seed=0", "not"], ["seed=1", "not"]]
    assert all("job unreachable" in row for row in rows), done.stdout
    assert "sacct" not in done.stderr
