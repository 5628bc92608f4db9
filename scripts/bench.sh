#!/usr/bin/env bash
# Builds the release preset and runs tilepool-bench (share vs fork vs copy vs threads), then
# plots the results and prints the key ratios.
#
# Usage: scripts/bench.sh [--full] [Google Benchmark flags, e.g. --benchmark_filter=Share]
#   default  the quick set (a few minutes on two cores): arrays up to 64 MiB, workers 1 and nproc
#   --full   everything: arrays up to 1 GiB, every tile edge and kernel, workers 1, 2 and nproc
#
# Writes bench-out/bench.json (Google Benchmark JSON, with the machine in its context),
# bench-out/*.png and docs/img/*.png, and bench-out/summary.md (what it prints).
set -euo pipefail
cd "$(dirname "$0")/.."

bench_args=()
for arg in "$@"; do
  bench_args+=("$arg")
done

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target tilepool-bench tilepool-worker

mkdir -p bench-out docs/img
machine="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), \
$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
echo "tilepool-bench on: $machine"
echo "command: build/release/bin/tilepool-bench ${bench_args[*]:-} --benchmark_out=bench-out/bench.json --benchmark_out_format=json"

build/release/bin/tilepool-bench "${bench_args[@]}" \
  --benchmark_out=bench-out/bench.json --benchmark_out_format=json

{
  echo "tilepool-bench on: $machine"
  echo
  /usr/bin/python3 scripts/plot_bench.py bench-out/bench.json --out bench-out --out docs/img
} | tee bench-out/summary.md
