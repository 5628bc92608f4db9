#!/usr/bin/env bash
# Sets up, builds and runs every test with ctest.
# Usage: scripts/test.sh [PRESET] [extra ctest args]   (PRESET: release|debug|asan|tsan)
# With TILEPOOL_TEST_TARGETS="T1 T2 ...", builds only those targets (and what they need): for a
# stage that runs only some suites (.ci/run's ThreadSanitizer stage).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
preset=${1:-release}
shift || true
# shellcheck disable=SC2086 # the targets are words
scripts/build.sh "$preset" ${TILEPOOL_TEST_TARGETS:-}
ctest --preset "$preset" -j "$(nproc)" "$@"
