#!/usr/bin/env bash
# Sets up, builds and runs every test with ctest.
# Usage: scripts/test.sh [PRESET] [extra ctest args]   (PRESET: release|debug|asan|tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
preset=${1:-release}
shift || true
scripts/build.sh "$preset"
ctest --preset "$preset" -j "$(nproc)" "$@"
