"""Every bench script runs at smoke size: ``python bench/NAME.py --smoke`` (seconds; the bench's
own code path at tiny sizes) exits 0 and prints its figures, so a renamed method or broken
formatting fails here instead of rotting until someone runs the bench.

The scripts are found by globbing ``bench/*.py``: a new bench fails these tests until it
takes ``--smoke`` and has an entry in ``EXPECTED`` (or in ``LIBRARIES`` if it is not a script).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, mpirun

BENCH = ROOT / "bench"
#: bench/*.py files that are imported, not run, and why (they need no --smoke). ars_reference.py
#: is run by fidelity.py as a script, and posttrain.py, which compression.py imports, is a bench
#: of its own.
LIBRARIES: dict[str, str] = {"common.py": "the helpers every bench shares: --smoke, JSON output, mpirun"}
#: scripts meant to be started under mpirun (their docstrings say ``mpirun -n 2 python bench/...``)
MPI_RANKS = {"comm.py": 2, "population.py": 2, "population_cost.py": 2}
#: per script, patterns its smoke output must contain: the figures/ratios lines it prints
EXPECTED: dict[str, list[str]] = {
    "ars_reference.py": [r"iteration\s+10\s+episodes\s+20\s+eval\s+-?[\d.]+"],
    "async_history.py": [
        r"per-branch moments, rewritten :\s+[\d,]+ MB\s+[\d.]+ s",
        r"merged moment, appended\s+:\s+[\d.]+ MB\s+[\d.]+ s\s+\(history.h5 [\d.]+ MB; reading the run back",
    ],
    "backends.py": [
        r"swimmer\s+gymnasium\s+-?[\d.]+ ±\s+[\d.]+\s+envpool\s+-?[\d.]+ ±\s+[\d.]+\s+KS p [\d.]+\s+"
        r"Mann-Whitney p [\d.]+"
    ],
    "branches.py": [r"batched [\d.]+ ms vs looped [\d.]+ ms per iteration's 8 branches: [\d.]+x"],
    "checkpoint.py": [
        r"halfcheetah-linear .* MB written in [\d.]+ s; 10 iterations take [\d.]+ s: [\d.]+ %",
        r"mlp-2-members .* MB written in [\d.]+ s; 10 iterations take [\d.]+ s: [\d.]+ %",
    ],
    "comm.py": [r"digits-2k\s+2,410 params: \d+ B/iteration", r"B per receiver per iteration \([\d.]+x more\)"],
    "compression.py": [
        r"median pruned sparsity 0\.5 +as is [\d.]+ +ARS [\d.]+ +gradient [\d.]+ +ratio [\d.]+x",
        r"median shared bits 4 +as is [\d.]+",
        r"subspace d= 10000: [\d.]+ s/it",
        r"dense P in chunks \(d=1000, 16 rows\): [\d.]+ s per call",
    ],
    # the per-run lines are parsed by analysis/population_study.py (read_authors)
    "fidelity.py": [r"swimmer\s+authors\s+seed 0: (\d+|not reached)", r"swimmer\s+hpcars envpool\s+reached \d/1"],
    "llm_generate.py": [
        r"tiny\s+x1 rank 0: 8 rows x 4 tokens\s+lowrank\s+[\d.]+ tok/s\s+plain generate\s+[\d.]+ tok/s\s+"
        r"lowrank/plain [\d.]+\s+peak RSS [\d,]+ vs [\d,]+ MB: [\d.]+x",
        r"tiny\s+x2 rank 1: 4 rows",
    ],
    "model_scale.py": [
        r"mlp\s+P\s+[\d,]+\s+lowrank R=1\s+x2 \(calls of \d+\) iteration\s+[\d.]+ s \(noise [\d.]+, forward [\d.]+, "
        r"update [\d.]+, comm [\d.]+; noise\+update <= \d+ %\)\s+plain [\d.]+ s\s+eval/plain [\d.]+\s+RSS [\d,]+ MB",
        r"mlp\s+P\s+[\d,]+\s+dense\s+x2 \(calls of 16\) iteration",
        r"transformer\s+P\s+[\d,]+\s+lowrank R=1\s+x2 \(calls of 16\) iteration",
    ],
    "lowrank_samples.py": [
        r"digits\s+dense\s+final\s+[\d.]+ \[[\d.]+, [\d.]+\]\s+target [\d.]+: reached \d/1, median",
        r"digits\s+lowrank:4\s+final",
    ],
    "paper.py": [r"swimmer\s+V1\s+threshold 325: median .* episodes \(paper 100\), reached \d/1"],
    "population.py": [
        r"regression plain\s+median\s+-?[\d.]+\s+IQR \[-?[\d.]+, -?[\d.]+\]\s+beats plain in \d/2 seeds",
        r"truncation\+annealing\+swarm\+repulsion\s+.*repelled/generation [\d.]+",
    ],
    "population_cost.py": [r"M\s+2\s+scoring\s+[\d.]+ ms\s+update\s+[\d.]+ ms\s+\(\s*[\d.]+ % of the iteration\)"],
    "posttrain.py": [
        r"digits median held-out accuracy: before [\d.]+\s+adam [\d.]+\s+ars_loss [\d.]+\s+ars_metric [\d.]+",
        r"breast_cancer median held-out accuracy",
    ],
    "posttrain_lm.py": [
        r"es-lowrank\s+held-out accuracy [\d.]+ -> [\d.]+ \[[\d.]+, [\d.]+\] sd [\d.]+\s+"
        r"gain [+-][\d.]+\s+format-only [\d.]+",
        r"es-lowrank\s+at [\d,]+: [\d.]+",
        r"grpo30\s+held-out accuracy",
        r"sft\s+held-out accuracy",
    ],
    "posttrain_hf.py": [
        r"base-validation\s+accuracy [\d.]+ -> [\d.]+",
        r"es-seed1-validation-\S+\s+accuracy [\d.]+ -> [\d.]+ \([\d,]+ completions, [\d.]+ s\)\s+at [\d.]+ s: [\d.]+"
        r"\s+at [\d,]+ completions: [\d.]+\s+format-only [\d.]+",
        r"grpo-seed1-validation-\S+\s+accuracy [\d.]+ -> [\d.]+",
    ],
    "priority.py": [r"outliers: median eval_loss uniform .*; prioritized better on \d of 1 seeds; time x[\d.]+"],
    "scale.py": [
        r"\s+2 ranks\s+ready\s+[\d.]+ s\s+set-up\s+[\d.]+ s\s+comm\s+[\d.]+ ms/iteration\s+bare gather",
        r"params_sha256 identical on 1, 2 ranks: yes",
        r"refusal on rank 1 of 2: every rank exited 2 in [\d.]+ s",
    ],
    "stragglers.py": [r"hopper\s+2 ranks async\s+\d+ env steps/s"],
    "throughput.py": [
        r"hpcars envpool V1\s+\d+\s+\([\d.]+;\s+[\d.]+ µs\)",
        r"ARS iterations, Hopper-v5, envpool: 1 rank \d+ steps/s, 2 ranks \d+ steps/s, [\d.]+x",
    ],
}
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in LIBRARIES)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

#: prints every script's --help output (one JSON object) from one interpreter: torch is imported once
HELP_ALL = """
import contextlib, io, json, runpy, sys
sys.path.insert(0, "bench")  # as when a script runs: compression.py imports posttrain
helps = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        runpy.run_path(path, run_name="__main__")
    helps[path] = out.getvalue()
print(json.dumps(helps))
"""


def test_libraries_exist() -> None:
    missing = [name for name in LIBRARIES if not (BENCH / name).exists()]
    assert not missing, f"LIBRARIES names files that are gone: {missing}"


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    paths = [f"bench/{name}" for name in SCRIPTS]
    done = subprocess.run(
        [sys.executable, "-c", HELP_ALL, *paths], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {Path(path).name: text for path, text in json.loads(done.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_smoke(script: str, helps: dict[str, str]) -> None:
    assert "--smoke" in helps[script], f"bench/{script} --help does not list --smoke:\n{helps[script]}"


#: runs every given script with --smoke in one interpreter (torch imported once, not once per
#: script) and prints {path: {status, stdout, error}} as one JSON object
SMOKE_ALL = """
import contextlib, io, json, runpy, sys, traceback
sys.path.insert(0, "bench")
runs = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--smoke"]
    out, status, error = io.StringIO(), 0, ""
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        error = "" if done.code is None or isinstance(done.code, int) else str(done.code)
    except Exception:
        status, error = 1, traceback.format_exc()
    runs[path] = {"status": status, "stdout": out.getvalue(), "error": error}
print(json.dumps(runs))
"""


@pytest.fixture(scope="module")
def one_process_runs() -> dict[str, dict]:
    """The smoke runs of the scripts that are not started under mpirun: in two interpreters side
    by side (the machine's two cores; each imports torch once), half of the scripts each."""
    paths = [f"bench/{name}" for name in SCRIPTS if name not in MPI_RANKS and name in EXPECTED]
    halves = [paths[0::2], paths[1::2]]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", SMOKE_ALL, *half],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=ENV,
        )
        for half in halves
    ]
    runs: dict[str, dict] = {}
    for proc in running:
        stdout, stderr = proc.communicate(timeout=280)
        assert proc.returncode == 0, stderr[-3000:]
        runs.update(json.loads(stdout.strip().splitlines()[-1]))
    return {Path(path).name: run for path, run in runs.items()}


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script: str, request: pytest.FixtureRequest) -> None:
    assert script in EXPECTED, f"bench/{script} is new: give it --smoke and add what it prints to EXPECTED"
    if script in MPI_RANKS:
        cmd = [mpirun(), "-n", str(MPI_RANKS[script]), sys.executable, str(Path("bench") / script), "--smoke"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT, env=ENV)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    else:
        run = request.getfixturevalue("one_process_runs")[script]
        done = subprocess.CompletedProcess(script, run["status"], run["stdout"], run["error"])
        assert done.returncode == 0, f"bench/{script} --smoke failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    for pattern in EXPECTED[script]:
        assert re.search(pattern, done.stdout), f"bench/{script} --smoke printed no /{pattern}/:\n{done.stdout}"
    last = json.loads(done.stdout.strip().splitlines()[-1])  # the bench's figures as one JSON object
    assert last["bench"] == Path(script).stem
