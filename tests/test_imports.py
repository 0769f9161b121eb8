"""Importing hpcars changes nothing in the process: environment, threads, random state, plotting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.test_layout import ROOT, modules

PROBE = r"""
import importlib, json, os, sys
import matplotlib, numpy as np, torch

def state():
    return {
        "environ": dict(os.environ),
        "torch_threads": torch.get_num_threads(),
        "torch_rng": torch.random.get_rng_state().tolist(),
        "numpy_rng": [x.tolist() if hasattr(x, "tolist") else x for x in np.random.get_state()],
        "matplotlib_backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
        "pyplot_imported": "matplotlib.pyplot" in sys.modules,
    }

before = state()
import hpcars
for name in sys.argv[1:]:
    importlib.import_module(name)
for name in hpcars.__all__:
    getattr(hpcars, name)
after = state()
print(json.dumps({k: [before[k], after[k]] for k in before if before[k] != after[k]}))
"""


def test_importing_every_module_changes_no_global_state():
    names = sorted(modules())
    assert len(names) > 60 and "hpcars.analysis.report" in names and "hpcars.train" in names
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # as a user's shell has it
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *names], capture_output=True, text=True, timeout=180, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    changed = json.loads(done.stdout.strip().splitlines()[-1])
    assert changed == {}, {k: "changed" for k in changed} | {"environ": _env_diff(changed.get("environ"))}


def test_the_probe_sees_a_change():
    """``pin_threads`` does change the process: the probe must say so."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    pinned = subprocess.run(
        [sys.executable, "-c", PROBE.replace("after = state()", "hpcars.pin_threads(1)\nafter = state()")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    changed = json.loads(pinned.stdout.strip().splitlines()[-1])
    assert "environ" in changed and "OMP_NUM_THREADS" in changed["environ"][1]


def _env_diff(pair):
    if not pair:
        return None
    before, after = pair
    return {k: (before.get(k), after.get(k)) for k in set(before) | set(after) if before.get(k) != after.get(k)}
