#!/usr/bin/env bash
# What each sharing pattern costs on the seed workload, Python and C++: whole-process time
# (median) and peak memory (summed PSS of all the run's processes, sampled). Runs every pattern of
# examples/seed_patterns/ (see scripts/pattern_costs.py) and prints the markdown table that
# docs/patterns.md quotes; also writes bench-out/pattern_costs.{md,json}.
#
# Usage: scripts/pattern_costs.sh [RUNS=5] [MEMORY_RUNS=5]    (about a minute on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATTERN_COSTS_COMMAND="scripts/pattern_costs.sh $*"
runs=${1:-5}
memory_runs=${2:-5}
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target example-seed_patterns tilepool-worker >/dev/null
mkdir -p bench-out
/usr/bin/python3 scripts/pattern_costs.py --runs "$runs" --memory-runs "$memory_runs" \
  --json bench-out/pattern_costs.json | tee bench-out/pattern_costs.md
