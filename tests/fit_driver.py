"""``mpirun -n K python -m tests.fit_driver OUT``: the same runs through ``hpcars.fit`` and
through the command line's ``main``, in one MPI job (one interpreter start per rank)."""

from __future__ import annotations

import sys
from pathlib import Path

from hpcars.threads import pin_threads

COMMON = {"iterations": 4, "directions": 6, "top_directions": 3, "seed": 3, "eval_every": 2, "branch_batch": 4}
TASKS = {"problem": "tests.plugins_for_tests:fixed_wine", "objective": "tests.plugins_for_tests:sphere"}


def cli_args(task: str, run_dir: Path) -> list[str]:
    args = ["--task", task, "--run-dir", str(run_dir)]
    for name, value in COMMON.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


def main(out: Path) -> None:
    pin_threads()
    import hpcars
    from hpcars.cli.train import main as cli_main
    from tests import plugins_for_tests as plugins

    hpcars.fit(plugins.fixed_wine(), run_dir=str(out / "fit-problem"), **COMMON)
    hpcars.fit(plugins.sphere(), run_dir=str(out / "fit-objective"), verbose=True, **COMMON)  # every rank speaks
    for kind, task in TASKS.items():
        assert cli_main(cli_args(task, out / f"cli-{kind}")) == 0


if __name__ == "__main__":
    main(Path(sys.argv[1]))
