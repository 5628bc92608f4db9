#pragma once
// Private to benchmarks/: what every mode's benchmark shares. Each competing implementation
// (share.cpp, fork.cpp, copy.cpp, threads.cpp, plain_loop.cpp) registers its BM_<Mode>; the
// pool places each mode's arrays (ArrayPlacement); modes_bench.cpp is the driver that registers
// the cases.
//
// A case is a kernel over a workload; its pool is started outside the timed loop and kept warm
// across benchmarks (only pool.run is timed), and its arrays are kept while consecutive
// benchmarks use the same ones. Both are dropped when the next benchmark needs others.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tilepool/runner/pool.hpp"

namespace tilepool::bench {

/// A workload: a kernel over arrays of some shape, cut into tiles.
struct Case {
  std::string kernel;    ///< add, blur3x3, matmul or sum
  /// "seed", "tiles" (range 0: tile edge), "rows" (range 0: rows per tile, whole rows: each tile
  /// one contiguous block) or "size" (range 0: MiB per array)
  std::string workload;
  Shape shape;           ///< of each input (matmul: A and B are both this square); unused for "size"
  Shape tile;            ///< unused for "tiles" (the edge comes from the range)
};

/// Runs `c` on a warm pool of `mode`, its arrays placed for that mode. The last range argument is the
/// worker count. Reports bytes/s, tiles_per_s, peak_pss_bytes (parent + workers), compute_s,
/// bytes_copied and (fork mode) fork_s.
void run_case(benchmark::State& state, const Case& c, Mode mode);

/// Times Pool::start (its workers up and ready) for `mode`; range 0 is the worker count.
void run_pool_start(benchmark::State& state, Mode mode);

/// Registers "noop", a kernel that does nothing per tile (noop_kernel.cpp): BM_<Mode>/noop
/// measures dispatch alone. tilepool-bench is its pools' worker program, so workers know it.
void register_noop_kernel();

/// Drops the cached pool and arrays (call before exit so segments are removed).
void release_cached();

// One benchmark per competing implementation (their files).
void BM_Share(benchmark::State& state, const Case& c);
void BM_Fork(benchmark::State& state, const Case& c);
void BM_Copy(benchmark::State& state, const Case& c);
void BM_Threads(benchmark::State& state, const Case& c);
/// A plain single-threaded in-process c = a + b over 4096x4096 float64: the memory bandwidth
/// every mode's add is compared with.
void BM_PlainLoop(benchmark::State& state);

}  // namespace tilepool::bench
