#!/usr/bin/env bash
# Times tilepool's four modes (share, fork, copy, threads) against what Python users pick
# instead -- numpy in one process, multiprocessing.Pool + SharedMemory, joblib.Parallel with
# its automatic memmapping, dask.array with the processes and threads schedulers -- end to
# end (process start to exit), medians, on the seed job, 4096² add, 4096² blur3x3 and 65,536
# tiles. Every output is checked against numpy. Prints a markdown table naming the machine
# and writes bench-out/compare_python.{md,json}. scripts/compare_python.py does the work.
#
# Usage: scripts/compare_python.sh [RUNS=3] [WORKERS=2] [compare_python.py options]
#        QUICK=1 scripts/compare_python.sh      # 1 run each, runs killed after 10 s (about 2 minutes)
# The default (3 runs) takes about 4 minutes on 2 cores (dask at 65,536 tiles: a minute of it).
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPARE_COMMAND="${QUICK:+QUICK=$QUICK }scripts/compare_python.sh $*"
runs=${1:-3}
workers=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target tilepool tilepool-worker tilepool-add-floor tilepool-spawn-workers >/dev/null
mkdir -p bench-out
quick=()
if [ -n "${QUICK:-}" ]; then quick=(--quick); fi
/usr/bin/python3 scripts/compare_python.py --runs "$runs" --workers "$workers" "${quick[@]}" \
  --json bench-out/compare_python.json "$@" | tee bench-out/compare_python.md

# Warm jobs in one Python process: the tilepool module against the same peers, warm
# (scripts/compare_python_module.py), when pybind11 is installed and the module builds.
if cmake --build --preset release -j "$(nproc)" --target tilepool_python >/dev/null 2>&1; then
  PYTHONPATH=build/release/lib/python3/dist-packages /usr/bin/python3 scripts/compare_python_module.py \
    --runs "$(( runs * 10 ))" --workers "$workers" | tee bench-out/compare_python_module.md
fi
