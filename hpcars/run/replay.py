"""``--replay RUN_DIR``: an asynchronous run's update log re-applied to θ₀, on any world size.

An asynchronous update is a pure function of its rewards and its key (``update_log``), so the
log rebuilds θ exactly without scoring anything. The replay uses the run's own options: one
given on the command line that would change the result (``--seed``, ``--directions``, ...) is
refused, exit 2; it warns in one line when the software or the machine differ from the run's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from hpcars.algorithm.noise import NoiseSource
from hpcars.config import TrainConfig
from hpcars.errors import ConfigError
from hpcars.run import checkpoint
from hpcars.run.checkpoint import Checkpoint
from hpcars.run.engine import ARSTrainer
from hpcars.run.initial import InitialWeights
from hpcars.run.output import config_differences
from hpcars.run.provenance import continuation_warning
from hpcars.run.update_log import LogEntry, log_entries, replay
from hpcars.runtime.agreement import agree
from hpcars.runtime.comm import Transport
from hpcars.runtime.devices import choose_devices
from hpcars.tasks import make_task


def replay_run(cfg: TrainConfig, transport: Transport, out: TextIO) -> int:
    """``--replay RUN_DIR``: re-apply the run's update log to θ₀; 0 if it reproduces the
    run's parameters bitwise, 1 if not. Every rank replays the whole log (no messages).
    The replay uses the run's own options: one given on the command line that would change
    the result (``--seed``, ``--directions``, ...) is refused, exit 2."""
    start = time.perf_counter()
    trainer, found, saved, entries = agree(transport, lambda: _replay_setup(cfg, transport))
    replay(trainer, entries, cfg.max_staleness)
    sha = trainer.params_sha256()
    same = sha == saved.params_sha256
    if transport.rank == 0:
        warning = continuation_warning(saved.provenance, "replaying")
        if warning:  # no console handler here: the line the logger would print
            print(f"hpcars.train: warning: {warning}", file=sys.stderr, flush=True)
        applied = sum(e.applied for e in entries)
        print(
            f"replayed {len(entries)} updates ({applied} applied) of {found} on {transport.size} rank(s) in "
            f"{time.perf_counter() - start:.2f} s\n  params_sha256 {sha}\n  "
            + ("matches the run's" if same else f"DOES NOT MATCH the run's {saved.params_sha256}"),
            file=out,
            flush=True,
        )
    trainer.close()
    close_task = getattr(trainer.task, "close", None)
    if close_task is not None:
        close_task()
    return 0 if same else 1


def _replay_setup(cfg: TrainConfig, transport: Transport) -> tuple[ARSTrainer, Path, Checkpoint, list[LogEntry]]:
    """(θ₀'s trainer, checkpoint path, checkpoint, update log) for ``--replay``; refusals are ``ConfigError``."""
    found = checkpoint.locate(Path(cfg.replay))
    if found is None:
        raise ConfigError("--replay", f"{cfg.replay} holds no checkpoint")
    saved = checkpoint.read(found)
    entries = log_entries(saved.async_log)
    if not entries:
        raise ConfigError("--replay", f"{found} holds no update log (only --schedule async runs have one)")
    changed = config_differences(cfg, saved.config)
    if changed:
        raise ConfigError(
            "--replay",
            f"replays the run with its own options; these differ from {found}'s: {'; '.join(changed)} (leave them out)",
        )
    devices = choose_devices(cfg.device, transport.local_rank, cfg.devices_per_rank)
    initial = InitialWeights.read(cfg.init_from, cfg.init_partial) if cfg.init_from else None
    trainer = ARSTrainer(cfg, make_task(cfg), transport, devices, initial)
    trainer.noise = NoiseSource(cfg.seed, saved.noise_scheme)  # the run's own directions
    trainer.width = saved.call_width or trainer.legacy_width  # and its own calls
    if initial is not None and initial.obs_stat is not None and trainer.obs_stat is not None:
        trainer.set_obs_stat(initial.obs_stat)
    return trainer, found, saved, entries
