"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

Exit status: 0 done; 2 bad input or an unusable checkpoint (one line on stderr,
from rank 0; nothing saved is touched); 3 ranks diverged (the guard tripped);
75 stopped by SIGTERM/SIGUSR1/SIGUSR2 after writing a checkpoint (run the same
command, or ``--resume RUN_DIR``, to continue); 1 any other failure. With more than
one rank an unexpected error on one rank aborts the whole MPI job instead of
leaving the others waiting in a collective.
"""

from __future__ import annotations

import os

# One thread per rank unless the user chose otherwise; must precede importing torch.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dataclasses
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from hpcars import checkpoint
from hpcars.checkpoint import CheckpointError
from hpcars.comm import Transport, make_transport
from hpcars.config import ConfigError, TrainConfig, parse_args, to_dict
from hpcars.devices import choose_devices
from hpcars.engine import ARSTrainer, DivergenceError, IterationRecord, NonFiniteRewardError
from hpcars.initial import InitialWeights
from hpcars.output import (
    METRICS_FILE,
    SUMMARY_FILE,
    MetricsLog,
    RunDir,
    metric_columns,
    open_run_dir,
    plan_run_dir,
    write_config,
    write_json_atomic,
)
from hpcars.signals import EXIT_INTERRUPTED, StopRequest
from hpcars.snapshot import restore, snapshot
from hpcars.tasks import make_task

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


@dataclass(frozen=True)
class TargetReached:
    """When the evaluation score first reached ``--target`` (the paper's Table 1 measure)."""

    iteration: int
    episodes: int
    samples: int
    wall_s: float
    score: float


@dataclass(frozen=True)
class RunResult:
    trainer: ARSTrainer
    run_dir: Path
    interrupted_by: int  # the stop signal's number; 0 when the run reached its end


def _progress(record: IterationRecord, unit: str) -> str:
    evals = "  ".join(f"{k} {v:.4g}" for k, v in record.eval.items() if k != "score")
    episodes = f"  episodes {record.total_episodes}" if record.total_episodes else ""
    note = f"  [step skipped: {record.skipped}]" if record.skipped else ""
    pop = record.population
    if pop is not None:
        note = (
            f"  best m{pop.best_member} fitness {pop.fitness_best:.4g} (median {pop.fitness_median:.4g})"
            + (f"  SA kept {pop.sa_accepted}/{pop.sa_judged}" if pop.sa_judged else "")
            + (f"  clones {pop.clones}" if pop.clones else "")
            + note
        )
    rate = record.total_samples / max(record.elapsed_s, 1e-9)
    return (
        f"iter {record.iteration:5d}  reward {record.reward_mean:11.4f} (max {record.reward_max:11.4f})  {evals}"
        f"{episodes}  {unit} {record.total_samples:.3g}  {rate:.3g} {unit}/s"
        f"  comm {record.comm_bytes} B/it{note}"
    )


def population_line(cfg: TrainConfig) -> str:
    """The population options in use, for the first line of output ("" for plain ARS)."""
    if cfg.population == 1:
        return ""
    parts = [f"  population {cfg.population}"]
    if cfg.generation_every:
        parts.append(
            f"truncation every {cfg.generation_every} (kill {cfg.kill_fraction:g}, from {cfg.clone_from}"
            + (", PBT" if cfg.pbt_perturb else "")
            + ")"
        )
    if cfg.anneal_t0:
        parts.append(f"annealing T0 {cfg.anneal_t0:g} x{cfg.anneal_cooling:g}/it")
    if cfg.swarm:
        parts.append(f"swarm w {cfg.swarm_inertia:g} c1 {cfg.swarm_cognitive:g} c2 {cfg.swarm_social:g}")
    if cfg.repulsion:
        parts.append(f"repulsion {cfg.repulsion:g} radius {cfg.repulsion_radius:g}")
    return ", ".join(parts)


def _on_rank_0(transport: Transport, decide: Callable[[], RunDir]) -> RunDir:
    """Rank 0 decides (or refuses); every rank learns the decision, or raises the refusal."""
    decision: RunDir | Exception | None = None
    if transport.rank == 0:
        try:
            decision = decide()
        except (ConfigError, CheckpointError) as err:
            decision = err
    decision = transport.bcast(decision)
    if isinstance(decision, Exception):
        raise decision
    return decision


class Session:
    """One process's view of a run: the trainer plus, on rank 0, the files it writes."""

    def __init__(self, cfg: TrainConfig, transport: Transport, out: TextIO) -> None:
        self.cfg = cfg
        self.transport = transport
        self.lead = transport.rank == 0
        self.out = out
        # everything that can refuse the input comes before the run directory is touched
        self.devices = choose_devices(cfg.device, transport.local_rank, cfg.devices_per_rank)
        self.task = make_task(cfg)
        plan = _on_rank_0(transport, lambda: plan_run_dir(cfg))
        fresh = plan.resume_from is None
        initial = InitialWeights.read(cfg.init_from, cfg.init_partial) if cfg.init_from and fresh else None
        self.trainer = ARSTrainer(cfg, self.task, transport, self.devices, initial)
        self.init_from = self._init_record(initial)
        run_dir = _on_rank_0(transport, lambda: open_run_dir(cfg, plan))
        self.run_dir = run_dir.path
        self.world_sizes: list[tuple[int, int]] = []
        self.reached: TargetReached | None = None
        self.elapsed_before = 0.0
        previous_metrics = None
        if not fresh:
            saved = checkpoint.read(run_dir.resume_from)
            restore(self.trainer, saved)
            self.world_sizes = list(saved.world_sizes)
            self.reached = TargetReached(**saved.reached_target) if saved.reached_target else None
            self.elapsed_before = saved.elapsed_s
            self.init_from = saved.init_from
            previous_metrics = saved.metrics
        if not self.world_sizes or self.world_sizes[-1][1] != transport.size:
            self.world_sizes.append((self.trainer.iteration, transport.size))
        columns = metric_columns(self.task.eval_columns, population=cfg.population > 1)
        self.metrics = MetricsLog(self.run_dir / METRICS_FILE, columns, previous_metrics) if self.lead else None
        if self.lead:
            write_config(self.run_dir, cfg)
        self.start = time.perf_counter()
        self.last_checkpoint = self.trainer.iteration if run_dir.resume_from else -1
        self.checkpoint_path = run_dir.resume_from  # the latest checkpoint (rank 0 keeps it current)

    def _init_record(self, initial: InitialWeights | None) -> dict[str, Any] | None:
        """What --init-from loaded (a fresh start only); V2 statistics carried over from a V2 run."""
        report = self.trainer.init_report
        if initial is None or report is None:
            return None
        if initial.obs_stat is not None and self.trainer.obs_stat is not None:
            self.trainer.set_obs_stat(initial.obs_stat)
        return {
            "path": report.path,
            "file_sha256": report.file_sha256,
            "params_sha256": self.trainer.params_sha256(),
            "loaded": len(report.loaded),
            "kept": report.kept,
            "obs_stat": initial.obs_stat is not None and self.trainer.obs_stat is not None,
        }

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def say(self, text: str) -> None:
        if self.lead:
            print(text, file=self.out, flush=True)

    def save(self) -> None:
        """One checkpoint, written by rank 0 (call after ``trainer.guard()``)."""
        self.last_checkpoint = self.trainer.iteration
        if not self.lead:
            return
        state = dataclasses.replace(
            snapshot(self.trainer),
            config=to_dict(self.cfg),
            elapsed_s=self.elapsed(),
            world_sizes=self.world_sizes,
            reached_target=dataclasses.asdict(self.reached) if self.reached else None,
            metrics=self.metrics.columns_for_checkpoint(),
            init_from=self.init_from,
        )
        self.checkpoint_path = checkpoint.write(self.run_dir, state, self.cfg.keep_checkpoints)


def run(
    cfg: TrainConfig, transport: Transport, out: TextIO | None = None, stop: StopRequest | None = None
) -> RunResult:
    """Train per ``cfg`` (fresh or resumed); rank 0 writes the run directory and prints to
    ``out`` (default: the current ``sys.stdout``)."""
    out = out or sys.stdout
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    stop = stop or StopRequest()
    session = Session(cfg, transport, out)
    trainer, task = session.trainer, session.task

    session.say(
        f"hpcars: task {cfg.task}  {cfg.variant_name}  N={cfg.directions} b={cfg.top} α={cfg.step_size} "
        f"ν={cfg.noise_std}{population_line(cfg)}  {trainer.spec.size} parameters  {transport.size} rank(s) on "
        f"{','.join(map(str, session.devices))}  run dir {session.run_dir}"
    )
    if trainer.init_report is not None:
        session.say("  " + trainer.init_report.line())
    if trainer.space.kind != "full":
        info = trainer.space.describe()
        session.say(
            f"  search space {info['kind']}: {info['searched']} of {info['parameters']} dimensions searched"
            + "".join(f", {k} {info[k]:.4g}" for k in ("sparsity", "bits") if k in info)
            + f", compressed {info['compressed_bytes']} bytes (full: {4 * info['parameters']})"
        )
    first_eval: dict[str, float] = {}
    if trainer.iteration == 0:
        first_eval = trainer.evaluate()
        session.say("iter     0  " + "  ".join(f"{k} {v:.4g}" for k, v in first_eval.items()))
    else:
        session.say(f"resumed at iteration {trainer.iteration} (world sizes so far: {session.world_sizes})")

    last_eval = first_eval
    interrupted = 0
    while trainer.iteration < cfg.iterations:
        received_before = transport.bytes_moved
        record = trainer.step()
        last = trainer.iteration == cfg.iterations
        if (cfg.eval_every and trainer.iteration % cfg.eval_every == 0) or last:
            last_eval = trainer.evaluate()
            record = dataclasses.replace(record, eval=last_eval)
        stopping = transport.allmax(stop.signum or 0)  # any rank signalled -> all stop here
        save_now = bool(stopping) or trainer.iteration % cfg.checkpoint_every == 0
        if save_now or (cfg.guard_every and trainer.iteration % cfg.guard_every == 0):
            trainer.guard()  # the ranks agree on θ before anything is written
        record = dataclasses.replace(
            record, elapsed_s=session.elapsed(), comm_bytes=transport.bytes_moved - received_before
        )
        score = record.eval.get("score", float("nan"))
        newly = session.reached is None and score >= cfg.target  # never true for target = nan
        if newly:
            session.reached = TargetReached(
                trainer.iteration, trainer.total_episodes, trainer.total_samples, session.elapsed(), score
            )
        if session.lead:
            session.metrics.write(record)
            first_skip = bool(record.skipped) and trainer.skipped_steps == 1  # later ones: in metrics.csv
            if trainer.iteration % cfg.log_every == 0 or last or first_skip or newly:
                session.say(_progress(record, task.sample_unit))
        if newly:
            r = session.reached
            session.say(
                f"reached target {cfg.target:g} (score {score:.1f}) at iteration {r.iteration}: "
                f"{r.episodes} episodes, {r.samples} {task.sample_unit}, {r.wall_s:.1f} s"
            )
        if save_now:
            session.save()
        if stopping:
            interrupted = stopping
            break
        if newly and cfg.stop_at_target:
            break

    if session.last_checkpoint != trainer.iteration:
        trainer.guard()
        session.save()
    if session.lead:
        _finish(session, first_eval, last_eval, interrupted)
    return RunResult(trainer, session.run_dir, interrupted)


def _finish(session: Session, first_eval: dict, last_eval: dict, interrupted: int) -> None:
    cfg, trainer, out = session.cfg, session.trainer, session.out
    session.metrics.close()
    sha = trainer.params_sha256()
    latest = session.checkpoint_path
    if interrupted:
        print(
            f"stopped by {signal.Signals(interrupted).name} at iteration {trainer.iteration}; checkpoint {latest}\n"
            f"  continue with the same command, or: python -m hpcars.train --resume {session.run_dir}",
            file=out,
            flush=True,
        )
        return
    summary = {
        "iterations": trainer.iteration,
        "episodes": trainer.total_episodes,
        task_unit(session): trainer.total_samples,
        "wall_s": round(session.elapsed(), 3),
        "world_sizes": session.world_sizes,
        "final": last_eval,
        "initial": first_eval or None,
        "target": cfg.target if math.isfinite(cfg.target) else None,
        "reached_target": dataclasses.asdict(session.reached) if session.reached else None,
        "params_sha256": sha,
        "init_from": session.init_from,
        "checkpoint": str(latest),
    }
    write_json_atomic(session.run_dir / SUMMARY_FILE, summary)
    print(
        f"done: {trainer.iteration} iterations in {session.elapsed():.1f} s on {session.transport.size} rank(s)",
        file=out,
    )
    if first_eval:
        print(f"  initial: {first_eval}", file=out)
    print(f"  final:   {last_eval}", file=out)
    print("  " + trainer.describe().replace("\n", "\n  "), file=out)
    if math.isfinite(cfg.target):
        r = session.reached
        print(
            f"  target {cfg.target:g}: "
            + (f"reached at iteration {r.iteration}, {r.episodes} episodes" if r else "not reached"),
            file=out,
        )
    if trainer.skipped_steps:
        print(f"  {trainer.skipped_steps} step(s) skipped (non-finite or constant rewards)", file=out)
    print(f"  params_sha256 {sha}", file=out)
    print(f"  results in {session.run_dir}", file=out, flush=True)


def task_unit(session: Session) -> str:
    return session.task.sample_unit.replace(" ", "_")


def main(argv: Sequence[str] | None = None, transport: Transport | None = None) -> int:
    """The command line; returns the exit status. ``transport`` defaults to MPI (or one
    process); tests pass ``SingleProcess()`` to run it in process."""
    stop = StopRequest().install()
    transport = transport or make_transport()
    lead = transport.rank == 0

    def fail(err: Exception, status: int) -> int:
        if lead:
            print(f"hpcars.train: error: {err}", file=sys.stderr, flush=True)
        return status

    try:
        cfg = parse_args(argv)
        result = run(cfg, transport, stop=stop)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except (ConfigError, CheckpointError) as err:
        return fail(err, EXIT_BAD_INPUT)
    except DivergenceError as err:
        return fail(err, EXIT_DIVERGED)
    except NonFiniteRewardError as err:
        return fail(err, 1)
    except BaseException as err:
        if transport.size > 1:
            # The other ranks may be waiting in a collective: take the whole job down.
            print(f"hpcars.train: rank {transport.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            transport.abort(1)
        raise
    finally:
        stop.uninstall()
    return EXIT_INTERRUPTED if result.interrupted_by else 0


if __name__ == "__main__":
    sys.exit(main())
