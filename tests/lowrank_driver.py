"""``[mpirun -n K] python -m tests.lowrank_driver OUT``: every model of ``tests.models_for_tests``
trained with low-rank branches through ``hpcars.fit``, one run directory each, in one MPI job
(one interpreter start per rank for all of them)."""

from __future__ import annotations

import sys
from pathlib import Path

from hpcars.threads import pin_threads

SETTINGS = dict(
    iterations=2,
    directions=3,
    top_directions=2,
    perturbation="lowrank",
    perturbation_rank=2,
    noise_std=0.05,
    step_size=0.05,
    eval_every=0,
    branch_batch=4,
    seed=5,
)


def main(out: Path, names: list[str] | None = None) -> None:
    import hpcars
    from tests.models_for_tests import EXACT, language_problem

    for name in names or EXACT:
        hpcars.fit(language_problem(name), run_dir=str(out / name), out=None, **SETTINGS)


if __name__ == "__main__":
    pin_threads()
    main(Path(sys.argv[1]))
