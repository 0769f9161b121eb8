"""The package's layers, bottom to top: a module imports from its own layer or the ones below.

Written down once, here: ``tests/test_layout.py`` fails on any import — a function-level one
included — from a lower layer to a higher one, and on any import cycle (type-only imports
included); the README's layer table and ``docs/how-it-works.md`` come from this list (a test
compares them). A module belongs to the layer of the longest name here that it starts with.
"""

from __future__ import annotations

#: (layer, the modules and packages in it, what it holds) from the bottom up
LAYERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "base",
        ("hpcars.errors", "hpcars.version", "hpcars.threads", "hpcars.layers"),
        "every error hpcars raises, its version, thread pinning, this list: nothing of hpcars below them",
    ),
    (
        "algorithm",
        ("hpcars.algorithm",),
        "ARS itself, free of MPI and files: the noise, the rule, fitness shaping, rewards → Δθ, batched "
        "branches, perturbation kinds, search spaces, decoding, ask/tell",
    ),
    ("baselines", ("hpcars.baselines",), "GRPO on the built-in character model (the study's gradient baseline)"),
    ("population", ("hpcars.population",), "the population operators: truncation, annealing, swarm, repulsion"),
    ("config", ("hpcars.config",), "the options, their roles and their validation"),
    ("tasks", ("hpcars.tasks",), "what is trained and how a branch is scored: supervised, RL, language, plug-ins"),
    ("runtime", ("hpcars.runtime",), "MPI and the machine: transport, messages, schedules, agreement, devices"),
    (
        "run",
        ("hpcars.run",),
        "a run: the engine, its loops (synchronous and asynchronous), session, checkpoints, history, output",
    ),
    ("cli", ("hpcars.cli",), "the command-line tools: train, inspect, play, export"),
    (
        "doors",
        (
            "hpcars.api",
            "hpcars.checkpoint",
            "hpcars.train",
            "hpcars.inspect",
            "hpcars.play",
            "hpcars.export",
            "hpcars",
        ),
        "what users import and run: hpcars.fit, hpcars.checkpoint, python -m hpcars.train ...",
    ),
    ("jobs", ("hpcars.jobs",), "Slurm sweeps (jobs/, installed as hpcars.jobs)"),
    (
        "analysis",
        ("hpcars.analysis",),
        "a sweep's files into tables and plots (analysis/, installed as hpcars.analysis)",
    ),
)


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of the layer ``module`` (a dotted name) belongs to; ValueError if none."""
    best, found = -1, -1
    for index, (_, members, _) in enumerate(LAYERS):
        for member in members:
            inside = module == member or (module.startswith(member + ".") and member != "hpcars")  # the door: itself
            if inside and len(member) > best:
                best, found = len(member), index
    if found < 0:
        raise ValueError(f"{module} is in no layer of hpcars.layers.LAYERS")
    return found
