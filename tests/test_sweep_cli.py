"""Sweep and report commands without Slurm: bad paths are one-line errors, exit 2."""

from __future__ import annotations

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
