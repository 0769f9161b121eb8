"""Checkpoint bytes and time after many asynchronous updates: appended history vs rewritten log.

    python bench/async_history.py [--updates 10000] [--smoke]

Humanoid-sized V2 (the ARS paper's Humanoid setting: N = 230 directions, a linear
policy on Humanoid-v5's 348 inputs, 17 outputs), synthetic rewards: the update log
and metrics rows are built with their real shapes and written with the real code
(``hpcars.run.update_log.log_arrays``, ``hpcars.run.history.append``, ``hpcars.run.checkpoint.write``)
at the default ``--checkpoint-every``. Three layouts, side by side in one process:

* **per-branch, rewritten** (format ≤ 4): each log entry holds every branch's V2
  moments [2N, 1 + 2d] and every checkpoint rewrites the whole log and metrics
  table. Measured at two small log lengths and extrapolated linearly (at 10,000
  updates one checkpoint would be tens of GB);
* **merged, rewritten**: one merged moment per update [1 + 2d], still rewritten whole —
  measured at ``--updates`` (what the merged moment alone buys);
* **merged, appended** (format 5, what hpcars does): the log and metrics live in
  ``history.h5`` and a checkpoint appends only the rows since the last one — every
  checkpoint of a ``--updates`` run is written, the last ones timed.

Also: the time to read the whole run back (``checkpoint.read``: what a resume costs).
Last line: one JSON object. ``--smoke``: a short log, seconds, the same code path.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np

from hpcars.algorithm.runningstat import RunningStat
from hpcars.run import checkpoint
from hpcars.run import history as run_history
from hpcars.run.checkpoint import Checkpoint, Member
from hpcars.run.output import metric_columns
from hpcars.run.update_log import LogEntry, log_arrays

OBS, ACT, DIRECTIONS = 348, 17, 230  # Humanoid-v5, the ARS paper's N
#: ``--smoke``: the same measurement on a short log, seconds of run time
SMOKE = dict(updates=40, small=(2, 4), timed=2)


def entry(seq: int, rng: np.random.Generator, per_branch: bool) -> LogEntry:
    branches = 2 * DIRECTIONS
    width = 1 + 2 * OBS
    obs = rng.standard_normal((branches, width) if per_branch else width)
    return LogEntry(seq, 1 + seq % 7, seq, seq, True, 0, rng.standard_normal(branches), np.full(branches, 1000.0), obs)


def metrics_rows(start: int, count: int) -> dict[str, np.ndarray]:
    """One metrics row per update (the asynchronous table's columns), synthetic values."""
    columns = metric_columns(["score", "score_std", "episode_length"], population=False, asynchronous=True)
    rows = np.arange(start, start + count, dtype=np.float64)
    return {c: (np.array([""] * count, dtype=object) if c == "skipped" else rows.copy()) for c in columns}


def state(updates: int, rng: np.random.Generator) -> Checkpoint:
    """The trainer-side part of a checkpoint of a linear Humanoid V2 run."""
    params = {"weight": rng.standard_normal((ACT, OBS)).astype(np.float32)}
    stat = RunningStat(float(updates) * 2 * DIRECTIONS * 1000, rng.standard_normal(OBS), rng.random(OBS))
    return Checkpoint(
        config={"task": "Humanoid-v5", "variant": "v2", "directions": DIRECTIONS, "schedule": "async"},
        iteration=updates,
        total_episodes=updates * 2 * DIRECTIONS,
        total_samples=updates * 2 * DIRECTIONS * 1000,
        skipped_steps=0,
        elapsed_s=1.0,
        members=[Member(params, 0.0)],
        obs_stat=stat,
        world_sizes=[(0, 8)],
    )


def timed_write(run_dir: Path, ckpt: Checkpoint) -> tuple[float, int]:
    t = time.perf_counter()
    path = checkpoint.write(run_dir, ckpt, keep=3)
    return time.perf_counter() - t, path.stat().st_size


def rewritten(run_dir: Path, entries: list[LogEntry], rng: np.random.Generator) -> tuple[float, int]:
    """One checkpoint that holds the whole log and metrics table in the file (format ≤ 4)."""
    ckpt = dataclasses.replace(
        state(len(entries), rng), async_log=log_arrays(entries), metrics=metrics_rows(0, len(entries))
    )
    t = time.perf_counter()
    _, size = timed_write(run_dir, ckpt)
    return time.perf_counter() - t, size


def appended(run_dir: Path, updates: int, every: int, timed: int, rng: np.random.Generator) -> dict:
    """A whole run's checkpoints in the appended layout; the last ``timed`` ones measured."""
    run_dir.mkdir(parents=True)
    rows = dict.fromkeys(run_history.TABLES, 0)
    times, written = [], []
    for start in range(0, updates, every):
        new = [entry(seq, rng, per_branch=False) for seq in range(start, start + every)]
        before = run_history.path_in(run_dir).stat().st_size if run_history.path_in(run_dir).exists() else 0
        t = time.perf_counter()
        rows = run_history.append(run_dir, {"metrics": metrics_rows(start, every), "async_log": log_arrays(new)}, rows)
        path = checkpoint.write(run_dir, dataclasses.replace(state(start + every, rng), history=dict(rows)), keep=3)
        elapsed = time.perf_counter() - t
        if start + every > updates - timed * every:
            times.append(elapsed)
            written.append(run_history.path_in(run_dir).stat().st_size - before + path.stat().st_size)
    t = time.perf_counter()
    back = checkpoint.read(checkpoint.latest(run_dir))
    read_s = time.perf_counter() - t
    assert len(back.async_log["seq"]) == updates and back.async_log["obs"].shape == (updates, 1 + 2 * OBS)
    return {
        "write_s": statistics.median(times),
        "bytes": int(statistics.median(written)),
        "history_mb": run_history.path_in(run_dir).stat().st_size / 2**20,
        "read_s": read_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--updates", type=int, default=10_000, help="asynchronous updates before the measured checkpoint"
    )
    parser.add_argument("--every", type=int, default=10, help="updates per checkpoint (the default --checkpoint-every)")
    parser.add_argument(
        "--small", type=int, nargs=2, default=(20, 40), help="log lengths the per-branch layout is measured at"
    )
    parser.add_argument("--timed", type=int, default=20, help="last checkpoints of the appended run timed (median)")
    args = common.parse(parser, SMOKE)
    rng = np.random.default_rng(0)
    out: dict = {"bench": "async_history", "updates": args.updates, "checkpoint_every": args.every}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        fits = []
        for n in args.small:
            folder = Path(tmp) / f"per-branch-{n}"
            fits.append((n, *rewritten(folder, [entry(s, rng, per_branch=True) for s in range(n)], rng)))
        (n0, t0, b0), (n1, t1, b1) = fits
        per_update_b = (b1 - b0) / (n1 - n0)
        extrapolated_b = b0 + per_update_b * (args.updates - n0)
        out["per_branch_rewritten"] = {
            "measured": [{"updates": n, "write_s": round(t, 3), "mb": round(b / 2**20, 1)} for n, t, b in fits],
            "mb_per_update": round(per_update_b / 2**20, 3),
            "extrapolated_mb": round(extrapolated_b / 2**20),
            # time in proportion to bytes, at the larger measurement's rate (a line through two
            # small, noisy timings can even slope down)
            "extrapolated_write_s": round(t1 * extrapolated_b / b1, 1),
        }
        merged = [entry(s, rng, per_branch=False) for s in range(args.updates)]
        t, b = rewritten(Path(tmp) / "merged-rewritten", merged, rng)
        out["merged_rewritten"] = {"write_s": round(t, 3), "mb": round(b / 2**20, 1)}
        del merged
        row = appended(Path(tmp) / "appended", args.updates, args.every, args.timed, rng)
        out["merged_appended"] = {
            "write_s": round(row["write_s"], 4),
            "kb": round(row["bytes"] / 2**10, 1),
            "history_mb": round(row["history_mb"], 1),
            "read_s": round(row["read_s"], 3),
        }
    p, m, a = out["per_branch_rewritten"], out["merged_rewritten"], out["merged_appended"]
    print(
        f"Humanoid V2 (N {DIRECTIONS}, d {OBS}), checkpoint after {args.updates:,} async updates, every {args.every}:"
    )
    print(
        f"  per-branch moments, rewritten : {p['extrapolated_mb']:>10,} MB  {p['extrapolated_write_s']:>9.1f} s"
        f"   (extrapolated from {args.small[0]} and {args.small[1]} updates: {p['mb_per_update']} MB per update)"
    )
    print(f"  merged moment, rewritten      : {m['mb']:>10,.1f} MB  {m['write_s']:>9.3f} s")
    print(
        f"  merged moment, appended       : {a['kb'] / 1024:>10,.3f} MB  {a['write_s']:>9.4f} s"
        f"   (history.h5 {a['history_mb']:.1f} MB; reading the run back {a['read_s']:.2f} s)"
    )
    print(
        f"  appended vs per-branch rewritten: {p['extrapolated_mb'] * 1024 / max(a['kb'], 1e-9):,.0f}x fewer bytes, "
        f"{p['extrapolated_write_s'] / max(a['write_s'], 1e-9):,.0f}x less time; "
        f"vs merged rewritten: {m['mb'] * 1024 / max(a['kb'], 1e-9):,.0f}x fewer bytes, "
        f"{m['write_s'] / max(a['write_s'], 1e-9):,.0f}x less time"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
