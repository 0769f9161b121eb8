"""Many ranks on one machine: same bits, start-up and collective time, a refusal ends them all.

    python bench/scale.py [--ranks 1 8 32] [--iterations 20] [--smoke]

Runs the toy regression task (``--directions 32``: 64 branches, two per rank at 32
ranks) under ``mpirun -n K`` for each K, oversubscribed on this machine's cores, and
reports per world size:

* ``ready``: from launching mpirun to every rank having imported hpcars and torch and
  joined the MPI world (measured by rank 0 after a collective);
* ``set-up``: building the training session on every rank (devices, task, trainer,
  the agreed refusal checks — ``hpcars.runtime.agreement`` — and the run directory);
* ``comm``: the median per-iteration ``comm_s`` of the metrics (the rewards gather,
  including waiting for the slowest rank), and ``bare``: the same gather timed alone
  after a barrier (median of 50) — the collective's own cost;
* ``params_sha256``: must be the same on every world size (the bench fails otherwise).

Then a plug-in task that refuses on rank 1 only (``tests.plugins_for_tests:refuses_on_rank_1``)
is started on the largest K: every rank must exit with status 2, and the time to that is
printed. Last, the figures are fitted (start-up: a + b·K; the gather: a + b·log₂K and
a + b·K) and extrapolated to 1,000 ranks. On a machine with fewer cores than ranks every
figure includes the ranks' share of the cores (MPICH's ranks poll while they wait), so the
per-rank slopes here are upper bounds for a cluster with a core per rank.

Last line: one JSON object. ``--smoke``: 1 and 2 ranks, 3 iterations — seconds, the same code path.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from common import mpirun

ROOT = Path(__file__).resolve().parents[1]
#: ``--smoke``: the same measurement on 1 and 2 ranks, seconds of run time
SMOKE = dict(ranks=[1, 2], iterations=3, repeats=5)


def worker(args: argparse.Namespace) -> None:
    """One rank of a ``mpirun -n K python bench/scale.py --worker`` job."""
    import torch

    from hpcars.config import TrainConfig
    from hpcars.run.loop import run
    from hpcars.run.session import Session
    from hpcars.runtime.comm import make_transport, partition, shares

    torch.set_num_threads(1)
    transport = make_transport()
    transport.allmax(0)
    ready_s = time.time() - args.t0
    options = dict(task="regression", directions=args.directions, iterations=args.iterations, device="cpu")
    start = time.time()
    with Session(TrainConfig(**options, run_dir=str(Path(args.out) / "setup")), transport):
        transport.allmax(0)
    setup_s = time.time() - start
    result = run(TrainConfig(**options, run_dir=str(Path(args.out) / "run")), transport, out=io.StringIO())
    rows = np.zeros((len(partition(2 * args.directions, transport.size, transport.rank)), 2))
    counts = shares(2 * args.directions, transport.size)
    bare = []
    for _ in range(args.repeats):
        transport.allmax(0)
        t = time.perf_counter()
        transport.allgather_rows(rows, counts)
        bare.append(time.perf_counter() - t)
    if transport.rank == 0:
        comm = np.genfromtxt(Path(args.out) / "run" / "metrics.csv", delimiter=",", names=True)["comm_s"]
        figures = {
            "ranks": transport.size,
            "ready_s": ready_s,
            "setup_s": setup_s,
            "comm_ms": 1e3 * float(np.median(comm)),
            "bare_ms": 1e3 * statistics.median(bare),
            "params_sha256": result.trainer.params_sha256(),
        }
        print(json.dumps(figures), flush=True)
    transport.close()


def launch(ranks: int, args: argparse.Namespace, out: Path) -> dict:
    command = [*mpirun(ranks), sys.executable, __file__, "--worker"]
    command += ["--directions", str(args.directions), "--iterations", str(args.iterations)]
    command += ["--repeats", str(args.repeats), "--out", str(out), "--t0", repr(time.time())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bench/scale.py: {ranks} ranks failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def refusal(ranks: int, out: Path) -> dict:
    """A task factory that raises on rank 1 only: every rank must end with status 2."""
    command = [*mpirun(ranks), sys.executable, "-m", "hpcars.train"]
    command += ["--task", "tests.plugins_for_tests:refuses_on_rank_1", "--run-dir", str(out / "refused")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    seconds = time.perf_counter() - start
    lines = done.stderr.strip().splitlines()
    return {"ranks": ranks, "status": done.returncode, "seconds": seconds, "stderr": lines}


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 8, 32], help="world sizes to run")
    parser.add_argument("--directions", type=int, default=32, help="N (2N branches shared by the ranks)")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per world size")
    parser.add_argument("--repeats", type=int, default=50, help="timed bare gathers per world size")
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes, seconds of run time: {SMOKE}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**SMOKE)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            row = launch(ranks, args, Path(tmp) / f"n{ranks}")
            rows.append(row)
            print(
                f"{ranks:4d} ranks  ready {row['ready_s']:6.2f} s  set-up {row['setup_s']:6.2f} s  "
                f"comm {row['comm_ms']:8.3f} ms/iteration  bare gather {row['bare_ms']:8.3f} ms  "
                f"params {row['params_sha256'][:16]}",
                flush=True,
            )
        refused = refusal(max(args.ranks), Path(tmp))
    same = len({r["params_sha256"] for r in rows}) == 1
    print(f"params_sha256 identical on {', '.join(str(r['ranks']) for r in rows)} ranks: {'yes' if same else 'NO'}")
    print(
        f"refusal on rank 1 of {refused['ranks']}: every rank exited {refused['status']} "
        f"in {refused['seconds']:.1f} s; stderr: {refused['stderr'][-1] if refused['stderr'] else ''}"
    )
    ks = [r["ranks"] for r in rows]
    cores = os.cpu_count() or 1
    ready_a, ready_b = fit(ks, [r["ready_s"] for r in rows])
    setup_a, setup_b = fit(ks, [r["setup_s"] for r in rows])
    log_a, log_b = fit([float(np.log2(k)) for k in ks], [r["bare_ms"] for r in rows])
    lin_a, lin_b = fit(ks, [r["bare_ms"] for r in rows])
    print(
        f"fit: ready {ready_a:.2f} + {ready_b:.3f}·K s (on {cores} cores: {ready_b * cores:.2f} s of one core "
        f"per rank to import; with a core per rank it overlaps); set-up {setup_a:.3f} + {setup_b:.4f}·K s "
        f"-> {setup_a + 1000 * setup_b:.1f} s at 1,000 ranks; bare gather {log_a:.3f} + {log_b:.3f}·log2 K ms "
        f"-> {log_a + log_b * np.log2(1000):.2f} ms, or {lin_a:.3f} + {lin_b:.4f}·K ms -> "
        f"{lin_a + 1000 * lin_b:.1f} ms at 1,000 ranks"
    )
    result = {
        "bench": "scale",
        "rows": rows,
        "identical": same,
        "refusal": {k: refused[k] for k in ("ranks", "status", "seconds")},
        "fit": {
            "ready_s": [ready_a, ready_b],
            "setup_s": [setup_a, setup_b],
            "gather_ms_log2": [log_a, log_b],
            "gather_ms_linear": [lin_a, lin_b],
        },
    }
    common.emit(result)
    if not same or refused["status"] != 2:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
