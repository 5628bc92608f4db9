#!/usr/bin/env bash
# Scaling of tilepool-mpi on this machine: 1, 2 and 3 ranks, every rank its own node
# (--rank-per-node), on the seed workload and on a 4096x4096 float64 blur3x3 (inputs as .npy
# files, and the blur's input as a shm: segment that rank 0 sends out). Checks every output
# against single-machine `tilepool run` (cmp) and prints, per run: wall time, the slowest node's
# load (read inputs), compute and write (MPI-IO + publish) times, and per node its tiles, the
# bytes it read from the input file and the bytes it received from rank 0.
#
# Usage: scripts/bench_mpi.sh [EDGE]   (EDGE: the blur's array edge, default 4096)
# The ranks share this machine's cores (oversubscribed): times say little about scaling;
# the byte counts are what a cluster's nodes would read and move (see docs/mpi.md).
set -euo pipefail
cd "$(dirname "$0")/.."
edge=${1:-4096}
bin=build/release/bin
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target tilepool tilepool-worker tilepool-mpi >/dev/null

work=$(mktemp -d /tmp/tilepool-bench-mpi.XXXXXX)
seg="tpbench-mpi-$$"
trap 'rm -rf "$work"; "$bin/tilepool" rm "$seg" >/dev/null 2>&1 || true' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mpirun=(mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -q)

/usr/bin/python3 - "$work" "$edge" <<'PY'
import sys, numpy as np
work, edge = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
np.save(f"{work}/a.npy", rng.random((365, 16, 16)))
np.save(f"{work}/b.npy", rng.random((365, 16, 16)))
np.save(f"{work}/img.npy", rng.random((edge, edge)))
PY
"$bin/tilepool" put "$work/img.npy" "$seg" >/dev/null

echo "tilepool-mpi on: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
printf '%-34s %5s %7s %7s %9s %7s  %s\n' job ranks wall_s load_s compute_s write_s "per node: tiles / bytes read / bytes received"
run() {  # NAME FLAGS...
  local name=$1; shift
  "$bin/tilepool" run "$@" --workers 2 --output "$work/ref.npy" --force >/dev/null
  for ranks in 1 2 3; do
    "${mpirun[@]}" -np "$ranks" "$bin/tilepool-mpi" run --rank-per-node "$@" --workers 2 --json --force \
      --output "$work/out.npy" > "$work/run.json"
    cmp -s "$work/out.npy" "$work/ref.npy" || { echo "bench_mpi: $name on $ranks ranks differs from tilepool run" >&2; exit 1; }
    /usr/bin/python3 - "$name" "$ranks" "$work/run.json" <<'PY'
import sys, json
name, ranks, path = sys.argv[1], sys.argv[2], sys.argv[3]
j = json.load(open(path))
nodes = "  ".join(f"{n['tiles']}/{n['bytes_read']}/{n['bytes_received']}" for n in j["per_node"])
p = j['phases']
print(f"{name:<34} {ranks:>5} {j['wall_s']:7.3f} {p['load_s']:7.3f} {p['compute_s']:9.3f} {p['write_s']:7.3f}  {nodes}")
PY
  done
}
run "seed add 365x16x16, 4x4 tiles" --kernel add --input "$work/a.npy" --input "$work/b.npy" --tile 4,4
run "blur3x3 ${edge}^2, 256^2 tiles" --kernel blur3x3 --input "$work/img.npy" --tile 256,256
run "blur3x3 ${edge}^2 shm:, 256^2 tiles" --kernel blur3x3 --input "shm:$seg" --tile 256,256
echo "every output equals tilepool run's, byte for byte (cmp)"
