"""Sweeps on a real single-node Slurm (slurm/dev-cluster.sh), the local executor, and the report.

.ci/run brings the cluster up first; elsewhere these tests bring it up themselves
(and take it down again afterwards), or skip, saying why, when that is impossible
(no root, no apt).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, inspect_json, run_train

SPEC = """
name = "ci-sweep"
seeds = [0]
[base]
task = "regression"
iterations = 60
eval-every = 5
checkpoint-every = 20
target = -9.0
[grid]
step-size = [0.01, 0.02]
[resources]
tasks_per_node = 2
timeout_min = 30
"""

PREEMPT_SPEC = """
name = "ci-preempt"
seeds = [0]
[base]
task = "digits"
hidden = 128
iterations = 80
checkpoint-every = 5
eval-every = 5
[resources]
tasks_per_node = 2
timeout_min = 30
"""


def _cluster_env() -> dict[str, str]:
    out = subprocess.run(["bash", "slurm/dev-cluster.sh", "env"], cwd=ROOT, capture_output=True, text=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.replace("$PATH", env.get("PATH", ""))
    return env


def _cluster_is_up(env: dict[str, str]) -> bool:
    try:  # a running controller answers at once; a stopped one would keep sinfo retrying for a minute
        return subprocess.run(["sinfo", "-h"], env=env, capture_output=True, timeout=5).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):  # no Slurm installed, or no controller running
        return False


@pytest.fixture(scope="module")
def slurm_env():
    """The dev cluster's environment. A cluster found running is left running; one this
    fixture started is stopped again when the module's tests are done."""
    env = _cluster_env()
    if _cluster_is_up(env):
        yield env
        return
    up = subprocess.run(["bash", "slurm/dev-cluster.sh", "up"], cwd=ROOT, capture_output=True, text=True)
    if up.returncode != 0:
        pytest.skip(f"no Slurm here and slurm/dev-cluster.sh up failed: {up.stderr.strip()[-300:]}")
    try:
        yield _cluster_env()
    finally:
        subprocess.run(["bash", "slurm/dev-cluster.sh", "down"], cwd=ROOT, capture_output=True, text=True)


def _sweep(args, env, timeout=120):
    done = subprocess.run(
        [sys.executable, "-m", "hpcars.jobs.sweep", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_done(sweep_dir: Path, env, timeout: float) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = json.loads(_sweep(["status", str(sweep_dir), "--json"], env))["runs"]
        if all(r["state"] == "done" for r in rows):
            return rows
        time.sleep(2)
    raise AssertionError(f"sweep not done in {timeout} s: {rows}")


@pytest.fixture(scope="module")
def slurm_sweep(slurm_env, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    sweep_dir = root / "sweep"
    out = _sweep(["submit", str(spec), "--sweep-dir", str(sweep_dir)], slurm_env)
    assert "submitted 2 run(s) (slurm)" in out
    _wait_done(sweep_dir, slurm_env, timeout=240)
    return spec, sweep_dir


def test_slurm_sweep_of_two_rank_runs_and_report(slurm_sweep, slurm_env):
    spec, sweep_dir = slurm_sweep
    runs = sorted((sweep_dir / "runs").iterdir())
    assert len(runs) == 2
    for run_dir in runs:
        info = inspect_json(run_dir)
        assert info["world_sizes"] == [[0, 2]] and info["iteration"] == 60
    report = subprocess.run(
        [sys.executable, "-m", "hpcars.analysis.report", str(sweep_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    out = sweep_dir / "report"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "sensitivity.png").stat().st_size > 1000
    table = (out / "threshold.md").read_text()
    assert "step_size=0.01" in table and "step_size=0.02" in table
    runs_table = pd.read_csv(out / "runs.csv")
    assert runs_table["run"].nunique() == 2 and set(runs_table["seed"]) == {0}
    # re-submitting skips what is done
    assert "submitted 0 run(s) (slurm), 2 already done" in _sweep(
        ["submit", str(spec), "--sweep-dir", str(sweep_dir)], slurm_env
    )


def test_same_sweep_through_local_executor(slurm_sweep, slurm_env, tmp_path):
    spec, slurm_dir = slurm_sweep
    local_dir = tmp_path / "local"
    assert "submitted 2 run(s) (local)" in _sweep(
        ["submit", str(spec), "--sweep-dir", str(local_dir), "--executor", "local"], slurm_env
    )
    _wait_done(local_dir, slurm_env, timeout=240)
    for run_dir in sorted((slurm_dir / "runs").iterdir()):
        local, slurm = inspect_json(local_dir / "runs" / run_dir.name), inspect_json(run_dir)
        assert local["world_sizes"] == [[0, 1]]
        assert local["params_sha256"] == slurm["params_sha256"]  # 1 rank locally, 2 under Slurm


def test_preempted_task_requeues_and_resumes_bit_exact(slurm_env, tmp_path):
    spec = tmp_path / "preempt.toml"
    spec.write_text(PREEMPT_SPEC)
    sweep_dir = tmp_path / "sweep"
    _sweep(["submit", str(spec), "--sweep-dir", str(sweep_dir)], slurm_env)
    job_id = list(json.loads((sweep_dir / "sweep.json").read_text())["submissions"][0]["jobs"].values())[0]
    metrics = sweep_dir / "runs" / "seed=0" / "metrics.csv"
    deadline = time.time() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) > 15) and time.time() < deadline:
        time.sleep(0.3)
    subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_env, check=True)  # what preemption sends
    _wait_done(sweep_dir, slurm_env, timeout=300)
    log = "".join(p.read_text() for p in (sweep_dir / "submitit").rglob("*_0_log.out"))
    assert "stopped by SIGUSR2" in log and "resumed at iteration" in log
    scontrol = subprocess.run(["scontrol", "show", "job", job_id], env=slurm_env, capture_output=True, text=True)
    assert "Restarts=1" in scontrol.stdout
    reference = tmp_path / "uninterrupted"
    direct = run_train(
        [
            "--task",
            "digits",
            "--hidden",
            "128",
            "--iterations",
            "80",
            "--checkpoint-every",
            "5",
            "--eval-every",
            "5",
            "--seed",
            "0",
            "--run-dir",
            str(reference),
        ]
    )
    assert direct.returncode == 0, direct.stderr
    assert inspect_json(sweep_dir / "runs" / "seed=0")["params_sha256"] == inspect_json(reference)["params_sha256"]
