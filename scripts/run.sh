#!/usr/bin/env bash
# Sets up, builds what the demo needs (the tilepool program and its worker, with their
# libraries) and runs the demo job (the seed workload on generated data). The tests,
# benchmarks, examples and tilepool-mpi are built by scripts/test.sh (or scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release tilepool tilepool-worker >/dev/null
exec build/release/bin/tilepool demo "$@"
