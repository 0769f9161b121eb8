"""Checkpoints: exact resume (also across world sizes), signals, killed ranks, bad files."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcars.algorithm.runningstat import RunningStat
from hpcars.cli.inspect import main as inspect_main
from hpcars.cli.options import parse_args
from hpcars.run import checkpoint
from hpcars.run.checkpoint import Checkpoint, Member
from hpcars.run.engine import ARSTrainer
from tests.conftest import ROOT, checkpoint_file, inspect_json, mpirun, run_cli, run_train, train_in_process

DIGITS_V2 = [
    "--task",
    "digits",
    "--variant",
    "v2",
    "--directions",
    "7",
    "--top-directions",
    "3",
    "--checkpoint-every",
    "4",
    "--eval-every",
    "4",
]


def _sample(iteration=5, members=2) -> Checkpoint:
    rng = np.random.default_rng(iteration)
    return Checkpoint(
        config={"task": "regression", "seed": 3},
        iteration=iteration,
        total_episodes=10,
        total_samples=2048,
        skipped_steps=1,
        elapsed_s=1.5,
        members=[
            Member({"w": rng.standard_normal((3, 2)).astype(np.float32), "b": np.zeros(3, np.float32)}, 0.5)
            for _ in range(members)
        ],
        obs_stat=RunningStat(4.0, np.arange(2.0), np.ones(2)),
        world_sizes=[(0, 2), (3, 3)],
        reached_target={"iteration": 4, "episodes": 8, "samples": 100, "wall_s": 1.0, "score": 2.0},
        metrics={"iteration": np.arange(1.0, 6.0), "skipped": np.array(["", "", "zero-reward-std", "", ""], object)},
        params_sha256="abc",
    )


def test_roundtrip_and_keep(tmp_path):
    for it in (1, 2, 3, 4):
        checkpoint.write(tmp_path, _sample(it), keep=2)
    files = checkpoint.listing(tmp_path)
    assert [f.name for f in files] == ["ckpt-00000003.h5", "ckpt-00000004.h5"]
    back = checkpoint.read(files[-1])
    want = _sample(4)
    assert back.iteration == 4 and back.world_sizes == [(0, 2), (3, 3)] and back.reached_target == want.reached_target
    for got, exp in zip(back.members, want.members, strict=True):
        assert got.fitness == exp.fitness and all(np.array_equal(got.params[k], exp.params[k]) for k in exp.params)
    assert list(back.members[0].params) == ["w", "b"]
    assert back.obs_stat.count == 4.0 and np.array_equal(back.obs_stat.mean, [0.0, 1.0])
    assert list(back.metrics["skipped"]) == ["", "", "zero-reward-std", "", ""]
    with h5py.File(files[-1]) as f:  # plain h5py, no hpcars needed
        assert f.attrs["format"] == "hpcars-checkpoint" and f["members/00001/w"].shape == (3, 2)


def test_crash_during_write_leaves_previous_valid(tmp_path):
    checkpoint.write(tmp_path, _sample(1), keep=3)
    # a writer killed mid-write: a big checkpoint, SIGKILLed while it writes
    script = (
        "import numpy as np; from hpcars.run import checkpoint; from tests.test_checkpoint import _sample; "
        "import dataclasses, sys; "
        "big = [checkpoint.Member({'w': np.ones((1 << 24,), np.float32)}) for _ in range(16)]; "
        "checkpoint.write(sys.argv[1], dataclasses.replace(_sample(2), members=big), keep=3)"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT)
    deadline = time.time() + 120  # importing torch on a busy machine can take most of it
    while not list((tmp_path / "checkpoints").glob(".ckpt-*.tmp-*")) and time.time() < deadline:
        assert writer.poll() is None, "the writer ended before it began writing"
        time.sleep(0.01)
    assert list((tmp_path / "checkpoints").glob(".ckpt-*.tmp-*")), "the writer never began writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert [f.name for f in checkpoint.listing(tmp_path)] == ["ckpt-00000001.h5"]
    assert checkpoint.read(checkpoint.latest(tmp_path)).iteration == 1
    # an exception inside the write (here: a parameter h5py cannot store) leaves no file behind
    bad = _sample(3)
    bad = Checkpoint(**{**bad.__dict__, "members": [Member({"w": np.array([object()])})]})
    with pytest.raises(TypeError):
        checkpoint.write(tmp_path, bad, keep=3)
    assert [f.name for f in checkpoint.listing(tmp_path)] == ["ckpt-00000001.h5"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign", "newer"])
def test_bad_checkpoint_exit_2_and_untouched(tmp_path, damage, capsys):
    run_dir = tmp_path / "r"
    assert train_in_process(["--iterations", "4", "--checkpoint-every", "2", "--run-dir", str(run_dir)], capsys)[0] == 0
    path = checkpoint_file(run_dir)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not hdf5 at all" * 100)
    else:
        with h5py.File(path, "r+") as f:
            if damage == "foreign":
                del f.attrs["format"]
            else:
                f.attrs["format_version"] = 99
    before = path.read_bytes()
    status, lines = train_in_process(["--resume", str(run_dir), "--iterations", "8"], capsys)
    assert status == 2 and len(lines) == 1 and str(path) in lines[0], lines
    expected = {
        "truncated": "unreadable",
        "garbage": "unreadable",
        "foreign": "not an hpcars checkpoint",
        "newer": "newer hpcars",
    }[damage]
    assert expected in lines[0]
    assert path.read_bytes() == before
    assert inspect_main([str(run_dir)]) == 2
    assert capsys.readouterr().err.startswith("hpcars.inspect: error: ")
    assert path.read_bytes() == before
    if damage == "newer":  # the same through the command line: exit status and one line, no traceback
        done = run_cli(["--resume", str(run_dir), "--iterations", "8"])
        assert done.returncode == 2 and done.stderr.strip().splitlines() == lines
        assert path.read_bytes() == before


def test_resume_equals_uninterrupted_across_world_sizes(tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_train(DIGITS_V2 + ["--iterations", "12", "--run-dir", str(whole)]).returncode == 0  # 1 rank
    first = run_cli(DIGITS_V2 + ["--iterations", "6", "--run-dir", str(parts)], ranks=2)
    assert first.returncode == 0, first.stderr
    # continue with 3 ranks, naming only what changes: the rest comes from the checkpoint
    second = run_cli(["--resume", str(parts), "--iterations", "12"], ranks=3)
    assert second.returncode == 0, second.stderr
    assert "resumed at iteration 6" in second.stdout
    a, b = inspect_json(whole), inspect_json(parts)
    assert a["params_sha256"] == b["params_sha256"]
    assert b["world_sizes"] == [[0, 2], [6, 3]] and b["iteration"] == 12
    assert b["metrics_rows"] == 12 and a["episodes"] == b["episodes"]
    with h5py.File(checkpoint_file(whole)) as fa, h5py.File(checkpoint_file(parts)) as fb:
        for key in ("count", "mean", "m2"):
            assert np.asarray(fa["obs_stat"][key]).tobytes() == np.asarray(fb["obs_stat"][key]).tobytes()


def _rank_pids(marker: str) -> list[int]:
    """PIDs of the Python ranks whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(marker.encode() in part for part in cmd) and b"hpcars.train" in cmd and b"-n" not in cmd:
                pids.append(int(entry.name))
    return sorted(pids)


def _start_long_run(run_dir: Path, ranks: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    args = [
        *extra,
        "--task",
        "digits",
        "--hidden",
        "256",
        "--iterations",
        "100000",
        "--checkpoint-every",
        "5",
        "--run-dir",
        str(run_dir),
    ]
    cmd = [mpirun(), "-n", str(ranks), sys.executable, "-m", "hpcars.train", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) > 8 and len(_rank_pids(str(run_dir))) == ranks:
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the run did not get going")


def test_every_stop_signal_is_caught_and_the_first_kept():
    """SIGTERM, SIGUSR1 and SIGUSR2 all request the stop (the 2-rank path below is the same
    handler for each, so it runs once, with SIGTERM; test_slurm sends SIGUSR2 for real)."""
    from hpcars.run.signals import StopRequest

    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        stop = StopRequest().install()
        try:
            os.kill(os.getpid(), sig)
            os.kill(os.getpid(), signal.SIGUSR2 if sig != signal.SIGUSR2 else signal.SIGTERM)
            assert stop.signum == sig
        finally:
            stop.uninstall()


def test_signal_on_one_rank_checkpoints_and_resumes(tmp_path):
    sig = signal.SIGTERM
    run_dir = tmp_path / "r"
    proc = _start_long_run(run_dir, ranks=2)
    os.kill(_rank_pids(str(run_dir))[1], sig)  # one rank only: the ranks must agree to stop
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert f"stopped by {signal.Signals(sig).name}" in out
    stopped = inspect_json(run_dir)
    assert stopped["metrics_rows"] == stopped["iteration"] > 8
    done = run_train(["--resume", str(run_dir), "--iterations", str(stopped["iteration"] + 3)])  # on 1 rank
    assert done.returncode == 0, done.stderr
    assert inspect_json(run_dir)["iteration"] == stopped["iteration"] + 3


def test_killed_rank_ends_job_quickly_and_resume_works(tmp_path):
    run_dir = tmp_path / "r"
    proc = _start_long_run(run_dir, ranks=2)
    killed_at = time.time()
    os.kill(_rank_pids(str(run_dir))[1], signal.SIGKILL)
    proc.communicate(timeout=60)
    assert time.time() - killed_at <= 30
    assert proc.returncode == signal.SIGKILL  # MPICH's mpiexec exits with the killed rank's signal number
    saved = inspect_json(run_dir)["iteration"]
    assert saved >= 5
    done = run_train(["--resume", str(run_dir), "--iterations", str(saved + 2)])  # on 1 rank
    assert done.returncode == 0, done.stderr
    assert f"resumed at iteration {saved}" in done.stdout


def test_exception_on_one_rank_ends_the_job_with_a_message(tmp_path):
    started = time.time()
    done = run_cli(
        [
            "--task",
            "tests.faulty_env:Faulty-v0",
            "--iterations",
            "1000",
            "--directions",
            "4",
            "--eval-episodes",
            "2",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        ranks=2,
        timeout=60,
    )
    assert time.time() - started <= 30
    assert done.returncode == 1, done.stderr  # "any other failure": rank 1 aborts the job with MPI_Abort(1)
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "hpcars.train: rank 1: RuntimeError: simulated env failure", lines


def test_a_checkpoint_keeps_its_call_width_and_an_older_one_resumes_at_the_old_width(tmp_path):
    """Calls are no wider than an iteration's branches (8 here, not --branch-batch 64); a
    checkpoint records the width, and one written before that resumes with --branch-batch wide
    calls, as its run was made."""
    import torch

    from hpcars.run.snapshot import restore
    from hpcars.runtime.comm import SingleProcess
    from hpcars.tasks import make_task

    run_dir = tmp_path / "r"
    assert run_train(["--directions", "4", "--iterations", "2", "--run-dir", str(run_dir)]).returncode == 0
    path = checkpoint_file(run_dir)
    assert checkpoint.read(path).call_width == 8
    cfg = parse_args(["--resume", str(run_dir)])
    trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")])
    restore(trainer, checkpoint.read(path))
    assert trainer.width == 8
    with h5py.File(path, "r+") as f:
        del f.attrs["call_width"]
    restore(trainer, checkpoint.read(path))
    assert trainer.width == 64
