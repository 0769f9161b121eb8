"""Creating Gymnasium environments, and where MuJoCo's warnings go.

Every env hpcars (and its benches and tests) steps is made by ``make_env``, which
first routes MuJoCo's warnings to this process's stderr. Left alone, MuJoCo prints
a warning *and appends it to ``MUJOCO_LOG.TXT`` in the working directory* — a file
that grows with every run wherever the job happens to start. Routed here:

* the deprecation notice MuJoCo raises while compiling Gymnasium v5's own XML
  (``settotalmass``, once per env created, i.e. hundreds of times per run) is
  dropped: it is about Gymnasium's files, not the user's run;
* every other warning (e.g. "Nan, Inf or huge value in QACC": an unstable
  simulation) is printed once per process as ``MuJoCo warning: ...`` on stderr,
  which under Slurm lands in the task's log beside the rest of the run's output;
  repeats of the same text are counted, not printed.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from typing import Any

KNOWN_MUJOCO_NOTICES = ("compiler attribute 'settotalmass' is deprecated",)


class MujocoWarnings:
    """MuJoCo's user-warning callback: drop known notices, print the rest once."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, message: str) -> None:
        if message.startswith(KNOWN_MUJOCO_NOTICES):
            return
        self.seen[message] += 1
        if self.seen[message] == 1:
            print(f"MuJoCo warning: {message} (repeats are not shown)", file=sys.stderr, flush=True)


@functools.cache
def route_mujoco_warnings() -> None:
    """Install the callback, once per process (a no-op without MuJoCo)."""
    try:
        import mujoco
    except ImportError:
        return
    mujoco.set_mju_user_warning(MujocoWarnings())


def make_env(env_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make(env_id, **kwargs)`` with MuJoCo's warnings routed to stderr."""
    import gymnasium

    route_mujoco_warnings()
    return gymnasium.make(env_id, **kwargs)


def gym_ids() -> list[str]:
    """Registered Gymnasium environment ids (empty without gymnasium)."""
    try:
        import gymnasium
    except ImportError:
        return []
    return sorted(gymnasium.registry)
