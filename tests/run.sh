#!/usr/bin/env bash
# The whole test suite: ruff (format + lint), mypy, single-process tests (they launch mpirun themselves where a
# test is about world sizes), then the pytest-mpi tests under 2 ranks. A hang fails the test it is
# in: every test has a per-test limit (pytest-timeout, `timeout` in pyproject.toml) and every
# subprocess a timeout of its own. The outer `timeout`s are only a last resort against a hang
# those cannot see, set far above a healthy run's time even on a busy machine (CI allows 90 min).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PYTHON:-python}
mpirun_bin=$(dirname "$(command -v "$py")")/mpirun
[ -x "$mpirun_bin" ] || mpirun_bin=mpirun

# style and types first: formatting and lint (ruff) take a second, the type check of hpcars/
# (mypy; both configured in pyproject.toml) under a minute from a cold cache
"$py" -m ruff format --check --quiet .
"$py" -m ruff check --quiet .
"$py" -m mypy
# two pytest workers (pytest-xdist), one per core: most tests run one process and would leave
# the other core idle. Whole files per worker (loadfile), so a module's fixtures run once.
timeout 2700 "$py" -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests --ignore=tests/mpi "$@"
timeout 900 "$mpirun_bin" -n 2 "$py" -m pytest -q -p no:cacheprovider --with-mpi tests/mpi
