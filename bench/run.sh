#!/usr/bin/env bash
# The benchmarks of issue 8 in one command, from a clean clone:
#
#   bench/run.sh [--quick] [--only NAME[,NAME...]] [--runs N] [--slow-runs N] [--no-build]
#
# Builds everything in release mode (the beam solver, the benches, the
# examples), creates bench/.venv with the Python peers from PyPI
# (bench/requirements.txt: openturns, otwrapy, submitit, dask, distributed,
# dask-jobqueue, joblib, pathos), then runs bench/harness.py: every workload,
# medians and ratios printed, bench/results.json written. The SSH and SLURM
# workloads reuse the services of scripts/services/ when they run and start
# them with scripts/services/up.sh only when they do not (as root); without
# them they are skipped with a note. `bench/.venv/bin/python bench/report.py`
# prints the markdown tables for BENCHMARKS.md.
#
# Workloads (--only): inprocess cpu beam cache ssh slurm memory growth.
# --quick: small sizes, one round. --runs: repetitions of the fast workloads
# (default 5); --slow-runs: rounds of beam, ssh and slurm (default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=1
args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) args+=("$arg") ;;
    esac
done

command -v cargo >/dev/null || { echo "bench/run.sh: cargo not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench/run.sh: python3 not found" >&2; exit 1; }

if ((build)); then
    echo "== building (release): the beam solver, the benches and the examples" >&2
    cargo build --release -p beam-solver
    cargo build --release -p otwrap --benches --examples
fi

venv=bench/.venv
stamp="$venv/.requirements.installed"
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s bench/requirements.txt "$stamp"; then
    echo "== creating $venv (python3 -m venv) and installing bench/requirements.txt from PyPI" >&2
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r bench/requirements.txt
    "$venv/bin/python" -c 'import openturns, otwrapy, submitit, dask_jobqueue, joblib, pathos' 
    cp bench/requirements.txt "$stamp"
fi

exec "$venv/bin/python" bench/harness.py ${args[@]+"${args[@]}"}
