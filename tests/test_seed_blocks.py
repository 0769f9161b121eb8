"""A confirmation judges a preset on seeds nobody chose anything on.

The packaged sweep specs (``jobs/examples/``) name their role: ``confirm-*`` specs confirm
a preset, every other spec of the same task either tuned one (``pop-tune-*``) or is the
study the preset was picked on (``seeds-*``, ``pop-*``). Per task, a confirmation's seeds
must be disjoint from the seeds of all the others: a figure from the seeds a setting was
chosen on is not a result.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path

from hpcars.cli.options import parse_args
from hpcars.jobs.spec import NO_RUN_DIR, load

EXAMPLES = Path(__file__).resolve().parents[1] / "jobs" / "examples"


@cache  # load() checks every run of every spec: once per session is enough
def seed_blocks() -> dict[str, dict[str, set[int]]]:
    """Task → spec name → the seeds its runs use."""
    blocks: dict[str, dict[str, set[int]]] = defaultdict(dict)
    for path in sorted(EXAMPLES.glob("*.toml")):
        spec = load(path)
        tasks: dict[str, str] = {}  # a run's options without its seed → its task (parsed once)
        for run in spec.runs():
            key = repr(sorted(run.options.items()))
            if key not in tasks:
                tasks[key] = parse_args(run.argv(NO_RUN_DIR)).task
            blocks[tasks[key]].setdefault(path.stem, set()).add(run.seed)
    return blocks


def test_confirmation_seeds_are_disjoint_from_tuning_and_study_seeds():
    clashes = []
    for task, specs in seed_blocks().items():
        confirming = {name: seeds for name, seeds in specs.items() if name.startswith("confirm-")}
        choosing = {name: seeds for name, seeds in specs.items() if not name.startswith("confirm-")}
        for (c, c_seeds), (t, t_seeds) in ((c, t) for c in confirming.items() for t in choosing.items()):
            shared = sorted(c_seeds & t_seeds)
            if shared:
                clashes.append(f"{task}: {c} and {t} share seeds {shared[0]}-{shared[-1]} ({len(shared)})")
    assert not clashes, "\n".join(clashes)


def test_every_population_preset_has_a_tuning_and_a_confirmation_spec():
    # the disjointness test above passes vacuously for a task with no confirmation: require one
    blocks = seed_blocks()
    for task in ("Swimmer-v5", "Hopper-v5", "HalfCheetah-v5"):
        names = set(blocks[task])
        assert any(n.startswith("confirm-") for n in names), task
        assert any(n.startswith("pop-tune-") for n in names), task
