#!/usr/bin/env bash
# A long soak of the fault and stress tests: every fault test repeated, and the many-jobs test
# with a much larger job count. Usage: scripts/soak.sh [REPEATS=50] [JOBS=200000]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-50}
jobs=${2:-200000}
scripts/setup.sh
scripts/build.sh release
before=$(ls /dev/shm | wc -l)
TILEPOOL_STRESS_JOBS=$jobs build/release/bin/tilepool-fault-tests --gtest_filter='*ManyJobs*'
build/release/bin/tilepool-fault-tests --gtest_repeat="$repeats" --gtest_filter='-*ManyJobs*' --gtest_brief=1
after=$(ls /dev/shm | wc -l)
echo "soak: $repeats repeats of the fault tests, $jobs jobs on one pool; /dev/shm entries before $before, after $after"
[ "$before" -eq "$after" ]
