"""Restarts on a stall: pay for more search only when a run stops improving.

A run watches its own evaluations. When the best evaluation since the last (re)start has not
risen by more than ``min_gain`` for ``patience`` iterations, the run has stalled: it starts
over — every member back at the run's initial point θ₀ (``fresh``) or at the parameters of
that best evaluation (``best``), with the population's search state reset (α, ν, annealing's
anchors, the swarm's velocities) and the episodes spent so far still counted. The noise is new
by construction: directions are drawn from the iteration counter, which goes on.

This is the restart half of IPOP-CMA-ES (Auger & Hansen 2005, "A restart CMA evolution strategy
with increasing population size", CEC 2005): plain ARS stalls on a minority of seeds at a
plateau it never leaves (Mania, Guy & Recht 2018, the 100-seed study), and a restart costs
nothing until it is needed. Growing the number of directions at each restart, IPOP's other
half, is not built.

Everything here is a pure function of the evaluations, which every rank holds identically,
and of ``Watch``, which the checkpoint keeps (``arrays``/``from_arrays``): every rank, and a
resumed run, restarts at the same iteration.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

#: where a restart puts every member
MODES = ("none", "fresh", "best")


@dataclass(frozen=True)
class RestartParams:
    mode: str = "none"  # none | fresh (θ₀) | best (the highest evaluation since the last start)
    patience: int = 100  # iterations without a gain > min_gain that make a stall
    min_gain: float = 0.0  # how much the best evaluation must rise to count as progress
    limit: int = 1  # at most this many restarts in a run

    @property
    def enabled(self) -> bool:
        return self.mode != "none" and self.limit > 0


@dataclass(frozen=True)
class Watch:
    """The stall detector's state since the last (re)start: the score progress is measured from,
    and the highest evaluation (whose parameters ``best`` mode restarts from)."""

    bar: float = -math.inf  # the score that counted as progress last (−inf before the first)
    since: int = 0  # the iteration of that progress (or of the start, before any)
    top: float = -math.inf  # the highest evaluation since the start
    top_iteration: int = -1  # its iteration (-1: none yet)
    restarts: int = 0  # restarts so far

    def arrays(self) -> dict[str, np.ndarray]:
        """The checkpoint's ``/restart`` group."""
        return {
            "bar": np.asarray(self.bar, dtype=np.float64),
            "since": np.asarray(self.since, dtype=np.int64),
            "top": np.asarray(self.top, dtype=np.float64),
            "top_iteration": np.asarray(self.top_iteration, dtype=np.int64),
            "restarts": np.asarray(self.restarts, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Watch:
        return cls(
            bar=float(arrays["bar"]),
            since=int(arrays["since"]),
            top=float(arrays["top"]),
            top_iteration=int(arrays["top_iteration"]),
            restarts=int(arrays["restarts"]),
        )


def observe(params: RestartParams, watch: Watch, iteration: int, score: float) -> tuple[Watch, bool]:
    """After the evaluation ``score`` at ``iteration``: the watch with it, and whether the run has
    stalled and may restart: ``patience`` iterations since the (re)start or the last rise of more
    than ``min_gain`` over the first evaluation since the start or that rise, restarts left. A
    non-finite score is no progress."""
    if math.isfinite(score) and score > watch.top:
        watch = dataclasses.replace(watch, top=score, top_iteration=iteration)
    if math.isfinite(score) and watch.bar == -math.inf:  # the first evaluation since the start sets the bar
        watch = dataclasses.replace(watch, bar=score)
    elif math.isfinite(score) and score > watch.bar + params.min_gain:
        watch = dataclasses.replace(watch, bar=score, since=iteration)
    stalled = iteration - watch.since >= params.patience
    return watch, params.enabled and stalled and watch.restarts < params.limit


def started_over(watch: Watch, iteration: int) -> Watch:
    """The watch of a run that restarts at ``iteration``: nothing seen since, one restart more."""
    return Watch(since=iteration, restarts=watch.restarts + 1)
