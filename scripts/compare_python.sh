#!/usr/bin/env bash
# Times the seed workload end to end (process start to exit): `tilepool run` against Python's
# multiprocessing.Pool + shared_memory (scripts/py_seed_baseline.py), N runs each, medians.
# Usage: scripts/compare_python.sh [RUNS=20] [WORKERS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
workers=${2:-2}
scripts/setup.sh
scripts/build.sh release >/dev/null
tp=build/release/bin/tilepool
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(0)
np.save('$dir/a.npy', rng.random((365, 16, 16)))
np.save('$dir/b.npy', rng.random((365, 16, 16)))"

median_ms() {  # runs "$@" $runs times, prints the median wall time in ms
  local times=()
  for _ in $(seq "$runs"); do
    rm -f "$dir/out.npy"
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f\n", a[int((NR+1)/2)]/1000}'
}

py=$(median_ms /usr/bin/python3 scripts/py_seed_baseline.py "$dir/a.npy" "$dir/b.npy" "$dir/out.npy" "$workers")
/usr/bin/python3 -c "
import numpy as np
assert np.array_equal(np.load('$dir/out.npy'), np.load('$dir/a.npy') + np.load('$dir/b.npy'))"
tp_ms=$(median_ms "$tp" run --kernel add --input "$dir/a.npy" --input "$dir/b.npy" --output "$dir/out.npy" --tile 4,4 --workers "$workers" --no-progress)
/usr/bin/python3 -c "
import numpy as np
assert np.array_equal(np.load('$dir/out.npy'), np.load('$dir/a.npy') + np.load('$dir/b.npy'))"
echo "seed workload, $workers workers, median of $runs runs, process start to exit:"
echo "  python multiprocessing.Pool + shared_memory: ${py} ms"
echo "  tilepool run (share mode):                   ${tp_ms} ms"
awk -v p="$py" -v t="$tp_ms" 'BEGIN {printf "  tilepool is %.1fx faster\n", p / t}'
