"""A training run as a submitit job (Slurm array task or local process).

Each Slurm task of the job is one MPI rank: submitit starts the tasks with
``srun --mpi=pmi2`` (or what the site needs), mpi4py picks up the world from PMI,
and every task calls ``TrainJob()``. Never start mpirun inside a task.

Preemption and time limits: Slurm signals the tasks (submitit asks for SIGUSR2
``signal_delay_s`` before the end). ``TrainJob`` installs hpcars' own handler over
submitit's, so the ranks stop together at an iteration boundary and write a
checkpoint; then each rank hands the signal on to submitit's handler, which on
global rank 0 calls ``checkpoint()`` and requeues the job. The requeued job builds
the same ``TrainJob``; its run directory holds the checkpoint, so it resumes — and
ends with the same parameters as an uninterrupted run. A SIGTERM-only cluster
gets the checkpoint too; re-submitting the sweep then resumes the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import submitit

from hpcars.errors import RunInterrupted, RunRefused
from hpcars.run.output import SUMMARY_FILE
from hpcars.run.signals import StopRequest
from hpcars.runtime.comm import make_transport


class TrainJob(submitit.helpers.Checkpointable):
    """``python -m hpcars.train ARGV`` as a checkpointable callable."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)

    def __call__(self) -> dict[str, Any]:
        from hpcars.cli.train import EXIT_BAD_INPUT, execute  # after submitit has set up the task's environment

        stop = StopRequest().install()  # replaces submitit's handlers in this process
        transport = make_transport()
        # the command line's own path: refusals agreed by every rank, an unexpected error aborts the job
        outcome = execute(self.argv, transport, stop)
        if outcome.status == EXIT_BAD_INPUT:
            raise RunRefused(outcome.error)
        if outcome.result is None:
            raise RuntimeError(f"hpcars.train {' '.join(self.argv)}: exit status {outcome.status}: {outcome.error}")
        result = outcome.result
        if result.interrupted_by:
            transport.close()  # every rank leaves MPI before the job is requeued
            stop.chain(result.interrupted_by)  # submitit: rank 0 checkpoints the submission and requeues
            raise RunInterrupted(f"{result.run_dir}: stopped by signal {result.interrupted_by}; checkpoint written")
        summary = result.run_dir / SUMMARY_FILE
        return json.loads(summary.read_text()) if summary.exists() else {}

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        # The state is in the run directory's HDF5 checkpoint: resubmit the same options.
        return submitit.helpers.DelayedSubmission(TrainJob(self.argv))
