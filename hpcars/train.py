"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

Exit status: 0 done; 2 bad input (one line on stderr, from rank 0); 3 ranks
diverged (the guard tripped); 1 any other failure. With more than one rank an
unexpected error on one rank aborts the whole MPI job instead of leaving the
others waiting in a collective.
"""

from __future__ import annotations

import os

# One thread per rank unless the user chose otherwise; must precede importing torch.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hpcars.comm import Transport, make_transport
from hpcars.config import ConfigError, TrainConfig, parse_args
from hpcars.devices import choose_devices
from hpcars.engine import ARSTrainer, DivergenceError, IterationRecord, NonFiniteRewardError
from hpcars.output import (
    METRICS_FILE, SUMMARY_FILE, MetricsWriter, resolve_run_dir, save_params, write_config, write_json_atomic,
)  # fmt: skip
from hpcars.tasks import make_task

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


def _progress(record: IterationRecord, elapsed: float, unit: str) -> str:
    evals = "  ".join(f"{k} {v:.4g}" for k, v in record.eval.items() if k != "score")
    episodes = f"  episodes {record.total_episodes}" if record.total_episodes else ""
    note = f"  [step skipped: {record.skipped}]" if record.skipped else ""
    return (
        f"iter {record.iteration:5d}  reward {record.reward_mean:11.4f} (max {record.reward_max:11.4f})  {evals}"
        f"{episodes}  {unit} {record.total_samples:.3g}  {record.total_samples / max(elapsed, 1e-9):.3g} {unit}/s"
        f"  comm {record.comm_bytes} B/it{note}"
    )


@dataclass(frozen=True)
class TargetReached:
    """When the evaluation score first reached ``--target`` (the paper's Table 1 measure)."""

    iteration: int
    episodes: int
    samples: int
    wall_s: float
    score: float


def _header(cfg: TrainConfig, trainer: ARSTrainer, world: int, devices, run_dir: Path) -> str:
    return (
        f"hpcars: task {cfg.task}  {cfg.variant_name}  N={cfg.directions} b={cfg.top} α={cfg.step_size} "
        f"ν={cfg.noise_std}  {trainer.spec.size} parameters  {world} rank(s) on "
        f"{','.join(map(str, devices))}  run dir {run_dir}"
    )


def run(cfg: TrainConfig, transport: Transport, out=sys.stdout) -> ARSTrainer:
    """Train per ``cfg``; rank 0 writes the run directory and prints progress."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    lead = transport.rank == 0
    devices = choose_devices(cfg.device, transport.local_rank, cfg.devices_per_rank)
    task = make_task(cfg)

    decision = None
    if lead:
        try:
            decision = str(resolve_run_dir(cfg))
        except ConfigError as err:
            decision = err
    decision = transport.bcast(decision)
    if isinstance(decision, ConfigError):
        raise decision
    run_dir = Path(decision)

    trainer = ARSTrainer(cfg, task, transport, devices)
    start = time.perf_counter()
    first_eval = trainer.evaluate()
    writer = None
    if lead:
        write_config(run_dir, cfg)
        writer = MetricsWriter(run_dir / METRICS_FILE, list(task.eval_columns))
        print(_header(cfg, trainer, transport.size, devices, run_dir), file=out)
        print("iter     0  " + "  ".join(f"{k} {v:.4g}" for k, v in first_eval.items()), file=out, flush=True)

    reached: TargetReached | None = None
    record = None
    for _ in range(cfg.iterations):
        record = trainer.step()
        last = trainer.iteration == cfg.iterations
        if (cfg.eval_every and trainer.iteration % cfg.eval_every == 0) or last:
            record = dataclasses.replace(record, eval=trainer.evaluate())
        if cfg.guard_every and (trainer.iteration % cfg.guard_every == 0 or last):
            trainer.guard()
        elapsed = time.perf_counter() - start
        score = record.eval.get("score", float("nan"))
        newly = reached is None and score >= cfg.target  # False for target = nan
        if newly:
            reached = TargetReached(trainer.iteration, trainer.total_episodes, trainer.total_samples, elapsed, score)
        if lead:
            writer.write(record, elapsed)
            if trainer.iteration % cfg.log_every == 0 or last or record.skipped or newly:
                print(_progress(record, elapsed, task.sample_unit), file=out, flush=True)
            if newly:
                print(f"reached target {cfg.target:g} (score {score:.1f}) at iteration {reached.iteration}: "
                      f"{reached.episodes} episodes, {reached.samples} {task.sample_unit}, {elapsed:.1f} s",
                      file=out, flush=True)  # fmt: skip
        if newly and cfg.stop_at_target:
            break

    elapsed = time.perf_counter() - start
    sha = trainer.params_sha256()
    if lead:
        writer.close()
        save_params(
            run_dir, trainer.named_params(), cfg=cfg, iteration=trainer.iteration,
            world_size=transport.size, sha256=sha, obs_stat=trainer.obs_stat,
        )  # fmt: skip
        summary = {
            "iterations": trainer.iteration, "episodes": trainer.total_episodes, task.sample_unit.replace(" ", "_"):
            trainer.total_samples, "wall_s": round(elapsed, 3), "world_size": transport.size,
            "final": record.eval, "initial": first_eval, "target": cfg.target if math.isfinite(cfg.target) else None,
            "reached_target": dataclasses.asdict(reached) if reached else None, "params_sha256": sha,
        }  # fmt: skip
        write_json_atomic(run_dir / SUMMARY_FILE, summary)
        print(f"done: {trainer.iteration} iterations in {elapsed:.1f} s on {transport.size} rank(s)", file=out)
        print(f"  initial: {first_eval}", file=out)
        print(f"  final:   {record.eval}", file=out)
        print("  " + trainer.describe().replace("\n", "\n  "), file=out)
        if math.isfinite(cfg.target):
            print(f"  target {cfg.target:g}: " + (
                f"reached at iteration {reached.iteration}, {reached.episodes} episodes" if reached else "not reached"
            ), file=out)  # fmt: skip
        if trainer.skipped_steps:
            print(f"  {trainer.skipped_steps} step(s) skipped (non-finite or constant rewards)", file=out)
        print(f"  params_sha256 {sha}", file=out)
        print(f"  results in {run_dir}", file=out, flush=True)
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    transport = make_transport()
    lead = transport.rank == 0
    try:
        cfg = parse_args(argv)
        run(cfg, transport)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except ConfigError as err:
        if lead:
            print(f"hpcars.train: error: {err}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except DivergenceError as err:
        if lead:
            print(f"hpcars.train: error: {err}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
    except NonFiniteRewardError as err:
        if lead:
            print(f"hpcars.train: error: {err}", file=sys.stderr, flush=True)
        return 1
    except BaseException as err:
        if transport.size > 1:
            # The other ranks may be waiting in a collective: take the whole job down.
            print(f"hpcars.train: rank {transport.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            transport.abort(1)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
