"""``--restart``: a run that starts over when its evaluations stall.

The synchronous loop hands every evaluation to ``Restarts.after_evaluation`` after the
iteration is recorded; the stall test is ``hpcars.population.restart.observe`` and the restart
``Population.restart``. Everything it reads — the evaluation, the trainer's state — is the
same on every rank, so every rank restarts at the same iteration, and its state travels in
the checkpoint's ``/restart`` group, so a resumed run restarts where the uninterrupted one did.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hpcars.config import TrainConfig
from hpcars.population.restart import RestartParams, Watch, observe, started_over
from hpcars.run.engine import ARSTrainer


class Restarts:
    """The stall watch of a run, the searched vector of its highest evaluation since the last
    start (``best`` mode), and the iterations it restarted at."""

    def __init__(self, params: RestartParams) -> None:
        self.params = params
        self.watch = Watch()
        self.top: torch.Tensor | None = None  # best mode: the evaluated member's θ (searched vector) at the top
        self.iterations: list[int] = []

    @classmethod
    def of(cls, cfg: TrainConfig) -> Restarts:
        return cls(RestartParams(cfg.restart, cfg.restart_patience, cfg.restart_min_gain, cfg.restarts))

    def after_evaluation(self, trainer: ARSTrainer, score: float, may_restart: bool = True) -> str:
        """Feed the evaluation ``score`` of ``trainer``'s current parameters; on a stall (and
        ``may_restart``: not the run's last iteration) restart every member. The line to print,
        or ``""``."""
        if not self.params.enabled:
            return ""
        before = self.watch
        self.watch, stalled = observe(self.params, before, trainer.iteration, score)
        if self.params.mode == "best" and self.watch.top_iteration != before.top_iteration:
            self.top = trainer.state.theta[trainer.best].clone()
        if not (stalled and may_restart):
            return ""
        return self._restart(trainer)

    def _restart(self, trainer: ARSTrainer) -> str:
        watch, cfg = self.watch, trainer.cfg
        top = self.top if self.params.mode == "best" else None
        from_top = top is not None
        start = top if top is not None else trainer.population.origin
        trainer.population.restart(start, cfg.step_size, cfg.noise_std, trainer.iteration)
        self.watch, self.top = started_over(watch, trainer.iteration), None
        self.iterations.append(trainer.iteration)
        where = f"the highest evaluation since the last start ({watch.top:.4g}, iteration {watch.top_iteration})"
        return (
            f"restart {self.watch.restarts} of {self.params.limit} at iteration {trainer.iteration}: no rise of more "
            f"than {self.params.min_gain:g} over {watch.bar:.4g} since iteration {watch.since}; every member back at "
            + (where if from_top else "the initial point")
        )

    # -- the checkpoint's /restart group ------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        if not self.params.enabled:
            return {}
        out = {**self.watch.arrays(), "iterations": np.asarray(self.iterations, dtype=np.int64)}
        if self.top is not None:
            out["top_theta"] = self.top.cpu().numpy()
        return out

    def load(self, arrays: dict[str, np.ndarray], device: torch.device) -> None:
        """Continue from a checkpoint's ``/restart`` group (none: a run that never watched)."""
        if not arrays:
            return
        self.watch = Watch.from_arrays(arrays)
        self.iterations = [int(i) for i in np.asarray(arrays["iterations"]).reshape(-1)]
        top = arrays.get("top_theta")
        self.top = None if top is None else torch.from_numpy(np.asarray(top, dtype=np.float32)).to(device)

    def summary(self) -> dict[str, object]:
        """For summary.json: when the run restarted."""
        best = self.watch.top if math.isfinite(self.watch.top) else None
        return {"iterations": list(self.iterations), "best_since_last_start": best}
