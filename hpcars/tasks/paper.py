"""Table 1 of Mania, Guy & Recht (2018): episodes to reach a threshold (average of 3 seeds).

Used by bench/paper.py and analysis/report.py. Keyed by the Gymnasium environment
name without its version; each entry gives the threshold and the episodes of every
ARS variant the paper reports. The v5 environments differ in details from the
paper's v1 ones (healthy rewards, contact costs, observation sizes), so these are a
yardstick, not an exact target.
"""

from __future__ import annotations

THRESHOLDS = {
    "Swimmer": 325,
    "Hopper": 3120,
    "HalfCheetah": 3430,
    "Walker2d": 4390,
    "Ant": 3580,
    "Humanoid": 6000,
}

EPISODES: dict[str, dict[str, int | None]] = {  # variant -> episodes to threshold (None: not reported / did not reach)
    "Swimmer": {"V1": 100, "V1-t": 100, "V2": 427, "V2-t": 427},
    "Hopper": {"V1": 89493, "V1-t": 51840, "V2": 3013, "V2-t": 1973},
    "HalfCheetah": {"V1": 10240, "V1-t": 8106, "V2": 2720, "V2-t": 1707},
    "Walker2d": {"V1": 392000, "V1-t": 166640, "V2": 89600, "V2-t": 24000},
    "Ant": {"V1": 101066, "V1-t": 58133, "V2": 60533, "V2-t": 20800},
    "Humanoid": {"V1": None, "V1-t": None, "V2": 142600, "V2-t": 142600},
}


def env_family(task: str) -> str:
    """'HalfCheetah-v5' -> 'HalfCheetah'."""
    return task.split("-v")[0]


def paper_episodes(task: str, variant: str) -> int | None:
    return EPISODES.get(env_family(task), {}).get(variant)


def paper_threshold(task: str) -> int | None:
    return THRESHOLDS.get(env_family(task))
