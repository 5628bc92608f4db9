#!/usr/bin/env bash
# Sets up, builds and runs the demo job (the seed workload on generated data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release >/dev/null
exec build/release/bin/tilepool demo "$@"
