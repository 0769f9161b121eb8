"""Safety of runs: collective refusals, finished runs left alone, exact resumes, the asynchronous
mode's final evaluation, replay's option check, the fallback to an older checkpoint, resources
released on failure, and squeue asked by the lead rank only."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hpcars.run import checkpoint
from hpcars.run.dashboard import Clock
from tests.conftest import ROOT, checkpoint_file, inspect_json, mpirun, run_cli, run_train

PLUGINS = "tests.plugins_for_tests"
#: a tiny regression run: one to three seconds in process
TINY = ["--directions", "4", "--batch-size", "256"]


def _hashes(run_dir: Path) -> dict[str, str]:
    """Every file under ``run_dir`` (relative path -> SHA-256 of its bytes)."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _train(args: list[str]) -> subprocess.CompletedProcess:
    done = run_train(args)
    assert done.returncode == 0, done.stderr
    return done


# -- 1. a refusal on one rank is every rank's -------------------------------------------------------------
def test_a_refusal_on_one_rank_ends_every_rank_with_one_line(tmp_path):
    """The plug-in factory fails on rank 1 only: no rank is left waiting in a collective."""
    started = time.monotonic()
    done = run_cli(
        ["--task", f"{PLUGINS}:refuses_on_rank_1", "--iterations", "3", "--run-dir", str(tmp_path / "r")],
        ranks=3,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hpcars.train: error: --task: {PLUGINS}:refuses_on_rank_1: the factory raised FileNotFoundError: "
        "no data on this node (on rank 1 of 3)"
    ]
    assert not (tmp_path / "r").exists()


# -- 2. a finished run is left as it is; a resumed run keeps its initial evaluation ----------------------
def test_rerunning_a_finished_run_changes_nothing_and_resume_keeps_initial(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    args = [*TINY, "--eval-every", "2", "--checkpoint-every", "2"]
    _train([*args, "--iterations", "4", "--run-dir", str(whole)])
    before = _hashes(whole)
    again = _train([*args, "--iterations", "4", "--run-dir", str(whole)])
    assert _hashes(whole) == before
    summary = _summary(whole)
    assert again.stdout.startswith(f"done already: {whole} has nothing left to train")
    assert f"params_sha256 {summary['params_sha256']}" in again.stdout
    assert f"initial: {summary['initial']}" in again.stdout and again.stderr == ""

    _train([*args, "--iterations", "2", "--run-dir", str(parts)])
    resumed = _train([*args, "--iterations", "4", "--run-dir", str(parts)])
    assert "resumed at iteration 2" in resumed.stdout
    assert summary["initial"] is not None and _summary(parts)["initial"] == summary["initial"]
    assert _summary(parts)["params_sha256"] == summary["params_sha256"]


@pytest.fixture(scope="module")
def async_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished asynchronous run, evaluated only at its end, with a target it reaches (read-only)."""
    run_dir = tmp_path_factory.mktemp("async") / "run"
    args = [*TINY, "--schedule", "async", "--iterations", "5", "--eval-every", "0", "--target", "-1000"]
    _train([*args, "--run-dir", str(run_dir)])
    return run_dir, args


def test_rerunning_a_finished_async_run_does_no_update(async_run, tmp_path):
    run_dir, args = async_run
    before = _hashes(run_dir)
    again = _train([*args, "--run-dir", str(run_dir)])
    assert _hashes(run_dir) == before
    assert again.stdout.startswith(f"done already: {run_dir}")
    # without summary.json the summary is written again from the last checkpoint, which stays as it was
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    checkpoints = {name: digest for name, digest in _hashes(copy).items() if name.startswith("checkpoints/")}
    _train([*args, "--run-dir", str(copy)])
    assert {name: digest for name, digest in _hashes(copy).items() if name.startswith("checkpoints/")} == checkpoints
    rewritten, original = _summary(copy), _summary(run_dir)
    assert rewritten["iterations"] == 5 and rewritten["params_sha256"] == original["params_sha256"]
    assert [p.name for p in checkpoint.listing(copy)] == ["ckpt-00000005.h5"]


# -- 3. exact resume with repulsion from --init-from weights ------------------------------------------------
def test_resume_with_repulsion_and_init_from_is_bit_exact(tmp_path):
    start = tmp_path / "start"
    _train([*TINY, "--iterations", "3", "--run-dir", str(start)])
    args = [*TINY, "--init-from", str(start), "--population", "3", "--repulsion", "1", "--repulsion-radius", "2"]
    args += ["--checkpoint-every", "3"]
    _train([*args, "--iterations", "6", "--run-dir", str(tmp_path / "a")])
    _train([*args, "--iterations", "3", "--run-dir", str(tmp_path / "b")])
    resumed = _train([*args, "--iterations", "6", "--run-dir", str(tmp_path / "b")])
    assert "resumed at iteration 3" in resumed.stdout
    a, b = inspect_json(tmp_path / "a"), inspect_json(tmp_path / "b")
    assert a["params_sha256"] == b["params_sha256"]


# -- 4. the asynchronous mode's final evaluation is recorded ------------------------------------------------
def test_async_final_evaluation_reaches_the_target(async_run):
    run_dir, _ = async_run
    summary = _summary(run_dir)
    assert summary["reached_target"] is not None and summary["reached_target"]["iteration"] == 5
    assert summary["best"]["iteration"] == 5
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header, last = rows[0].split(","), dict(zip(rows[0].split(","), rows[-1].split(","), strict=True))
    assert "score" in header and last["iteration"] == "5" and last["score"] != "" and last["seq"] == "-1"
    assert float(last["score"]) == summary["final"]["score"]


# -- 5. --replay replays with the run's own options ---------------------------------------------------------
@pytest.mark.parametrize(
    "option, value, shown", [("--seed", "5", "--seed 0 -> 5"), ("--directions", "3", "--directions 4 -> 3")]
)
def test_replay_refuses_a_changed_option(async_run, option, value, shown):
    run_dir, _ = async_run
    done = run_train(["--replay", str(run_dir), option, value])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("hpcars.train: error: --replay: replays the run with its own options; ")
    assert shown in lines[0] and str(checkpoint_file(run_dir)) in lines[0]


def test_replay_with_the_same_options_matches(async_run):
    run_dir, _ = async_run
    before = _hashes(run_dir)
    done = run_train(["--replay", str(run_dir), "--directions", "4", "--seed", "0"])
    assert done.returncode == 0, done.stderr
    assert "matches the run's" in done.stdout
    assert _hashes(run_dir) == before


# -- 6. an unreadable newest checkpoint: the one before it is resumed ------------------------------------------
def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path):
    run_dir = tmp_path / "r"
    args = [*TINY, "--keep-checkpoints", "2", "--checkpoint-every", "2", "--run-dir", str(run_dir)]
    _train([*args, "--iterations", "4"])
    straight = _summary(run_dir)["params_sha256"]
    older, newest = checkpoint.listing(run_dir)
    garbage = newest.read_bytes()[:1000]  # cut short, as by a crashed file system
    newest.write_bytes(garbage)
    done = run_train([*args, "--iterations", "4"])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpcars.train: warning: "), lines
    assert str(newest) in lines[0] and f"resumed from {older} instead" in lines[0]
    assert "resumed at iteration 2" in done.stdout
    kept = newest.with_name(newest.name + ".unreadable")
    assert kept.read_bytes() == garbage
    assert checkpoint.listing(run_dir) == [older, newest]  # written again, from iteration 2
    assert _summary(run_dir)["params_sha256"] == straight


# -- 7. a failing run gives its files back ---------------------------------------------------------------
def _open_files() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def test_a_run_that_fails_midway_closes_its_files(tmp_path):
    from hpcars.cli.train import main
    from hpcars.runtime.comm import SingleProcess

    counts = []
    for name in ("a", "b", "c"):
        run_dir = tmp_path / name
        args = ["--task", f"{PLUGINS}:fails_at_iteration_2", "--iterations", "5", "--directions", "2"]
        with pytest.raises(RuntimeError, match="simulated failure") as failed:
            main([*args, "--run-dir", str(run_dir)], transport=SingleProcess())
        # the traceback (and with it the session) is still alive here: only close() can have released the files
        assert failed.tb is not None
        assert (run_dir / "metrics.csv").exists()
        assert not [f for f in _open_files() if f.startswith(str(tmp_path))]
        gc.collect()  # what earlier tests left for the collector does not blur the count
        counts.append(len(_open_files()))
    assert counts[2] <= counts[1], counts  # no growth from run to run (the first may open libraries' files once)


# -- 7 and 8 on two ranks: the node counter is closed, and only the lead asks squeue --------------------------
MPI_SCRIPT = """
import io, os, sys
from pathlib import Path

sys.path.insert(0, {root!r})
base = Path(sys.argv[1])
os.environ["SLURM_JOB_ID"] = "4242"  # set here: in mpirun's environment it would make MPICH launch with srun
os.environ["PATH"] = f"{{base / 'bin'}}{{os.pathsep}}{{os.environ['PATH']}}"
from hpcars.cli.options import parse_args
from hpcars.runtime.comm import make_transport
from hpcars.run.loop import run

transport = make_transport()
assert transport.size == 2
for name in ("a", "b"):
    argv = ["--schedule", "dynamic", "--branch-batch", "2", "--iterations", "2", "--run-dir", str(base / name)]
    run(parse_args([*{tiny!r}, *argv]), transport, out=io.StringIO())
links = []
for fd in os.listdir("/proc/self/fd"):
    try:
        links.append(os.readlink(f"/proc/self/fd/{{fd}}"))
    except OSError:
        pass
print(f"rank {{transport.rank}}: {{sum('.counter' in link for link in links)}} counter files open", flush=True)
"""


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Two dynamic-schedule runs, one after the other, in one two-rank MPI job that believes it is
    in Slurm job 4242, with a ``squeue`` of its own that notes which rank called it."""
    base = tmp_path_factory.mktemp("mpi")
    (base / "bin").mkdir()
    squeue = base / "bin" / "squeue"
    squeue.write_text(f'#!/bin/sh\necho "${{PMI_RANK:-?}}" >> {base / "asked"}\necho 2030-01-01T00:00:00\n')
    squeue.chmod(0o755)
    script = base / "two_runs.py"
    script.write_text(textwrap.dedent(MPI_SCRIPT).format(root=str(ROOT), tiny=TINY))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_JOB_ID", None)
    done = subprocess.run(
        [mpirun(), "-n", "2", sys.executable, str(script), str(base)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, base


def test_runs_give_the_node_counter_back(two_rank_runs):
    done, _ = two_rank_runs
    assert sorted(line for line in done.stdout.splitlines() if line.startswith("rank ")) == [
        "rank 0: 0 counter files open",
        "rank 1: 0 counter files open",
    ]


def test_only_the_lead_rank_asks_squeue(two_rank_runs):
    _, base = two_rank_runs
    assert (base / "asked").read_text().split() == ["0", "0"]  # once per run, by rank 0


def test_clock_without_ask_slurm_runs_no_squeue(tmp_path, monkeypatch):
    marker = tmp_path / "asked"
    squeue = tmp_path / "squeue"
    squeue.write_text(f"#!/bin/sh\necho called >> {marker}\necho 2030-01-01T00:00:00\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert Clock(0, 10, ask_slurm=False).job_end is None
    assert not marker.exists()
    assert Clock(0, 10, ask_slurm=True).job_end is not None  # the fake squeue is the one found
    assert marker.read_text().split() == ["called"]
