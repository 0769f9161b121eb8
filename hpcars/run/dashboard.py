"""Live views of a run: TensorBoard event files (``--log tensorboard``) and the progress line's ETA.

``TensorBoardLog`` (rank 0) writes every numeric column of each metrics row as a
scalar — ``train/<column>`` (rewards, σ_R, update norm, samples, episodes, timing,
bytes), ``eval/<column>`` for the evaluation columns, ``population/…`` and
``async/…`` for those modes' columns — against the iteration, and flushes after
every evaluation and every ``--log-every`` iterations, so ``tensorboard --logdir
RUN_DIR/tensorboard`` follows the run while it trains. It needs the ``tensorboard``
package (``pip install 'hpcars[dashboard]'``); without it ``--log tensorboard`` is
refused before any work.

``Clock`` gives the iteration rate of this part of the run and the ETA for
``--iterations``, and, inside a Slurm job, how long the job has left (asked once of
``squeue`` by the lead rank only: the job's end time).
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

from hpcars.errors import ConfigError
from hpcars.run.engine import IterationRecord


def check_available(log: str) -> None:
    """``ConfigError`` now if ``--log`` asks for something not installed."""
    if log == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise ConfigError(
                "--log", "tensorboard needs the tensorboard package: pip install 'hpcars[dashboard]'"
            ) from None


class TensorBoardLog:
    def __init__(self, run_dir: Path, log_every: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.log_every = log_every

    def write(self, record: IterationRecord, row: dict[str, object]) -> None:
        groups = {name: "eval" for name in record.eval}
        if record.population is not None:
            groups.update({name: "population" for name in record.population.columns()})
        if record.asynchronous is not None:
            groups.update({name: "async" for name in record.asynchronous.columns()})
        for name, value in row.items():
            if name != "iteration" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"{groups.get(name, 'train')}/{name}", value, record.iteration)
        if record.eval or record.iteration % self.log_every == 0:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def slurm_end_time() -> float | None:
    """The Slurm job's end (epoch seconds), or None outside Slurm / when squeue cannot tell."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=10)
        return datetime.fromisoformat(out.stdout.strip()).timestamp()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class Clock:
    """Iteration rate and ETA of the current part of a run (resumes start a new part)."""

    def __init__(self, first_iteration: int, iterations: int, ask_slurm: bool = True) -> None:
        """``ask_slurm``: whether to ask ``squeue`` for the job's end — the lead rank only, so
        that a thousand-rank job sends slurmctld one query, not a thousand."""
        self.first, self.iterations = first_iteration, iterations
        self.start = time.perf_counter()
        self.job_end = slurm_end_time() if ask_slurm else None

    def line(self, iteration: int) -> str:
        done, elapsed = iteration - self.first, time.perf_counter() - self.start
        if done <= 0 or elapsed <= 0:
            return ""
        rate = done / elapsed
        text = f"  {rate:.3g} it/s  ETA {_duration((self.iterations - iteration) / rate)}"
        if self.job_end is not None:
            text += f" (Slurm job ends in {_duration(self.job_end - time.time())})"
        return text
