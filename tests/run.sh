#!/usr/bin/env bash
# The whole test suite: ruff (format + lint), single-process tests (they launch mpirun themselves where a
# test is about world sizes), then the pytest-mpi tests under 2 ranks. Each phase is
# wrapped in `timeout` so a hung collective fails instead of hanging.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PYTHON:-python}
mpirun_bin=$(dirname "$(command -v "$py")")/mpirun
[ -x "$mpirun_bin" ] || mpirun_bin=mpirun

# style first: formatting and lint (ruff, configured in pyproject.toml) take a second
"$py" -m ruff format --check --quiet .
"$py" -m ruff check --quiet .
timeout 600 "$py" -m pytest -q -p no:cacheprovider tests --ignore=tests/mpi "$@"
timeout 300 "$mpirun_bin" -n 2 "$py" -m pytest -q -p no:cacheprovider --with-mpi tests/mpi
