#include "modes/bench_support.hpp"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "tilepool/runner/memory_stats.hpp"

namespace tilepool::bench {
namespace {

// This program is its pools' workers (main calls serve_as_worker_if_asked): they know "noop".
const std::filesystem::path kSelf = "/proc/self/exe";

// The arrays of the case being measured, kept while consecutive benchmarks use them.
struct Fixture {
  std::string key;
  JobRequest job;  // its arrays own their memory (share mode: job-owned segments)
  std::uint64_t bytes_per_run = 0;  // what one run reads and writes
  std::uint64_t array_bytes = 0;    // of one input
};

struct Cache {
  std::unique_ptr<Fixture> fixture;
  std::optional<Pool> pool;
  Mode pool_mode = Mode::share;
  int pool_workers = 0;
};

Cache& cache() {
  static Cache c;
  return c;
}

// Values that keep every kernel finite; cheap to write for GiB-sized arrays.
void fill(const AnyArray& a, unsigned seed) {
  auto* p = reinterpret_cast<double*>(a.data());
  const std::int64_t n = a.size();
  for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<double>((i * 7 + seed) % 1021) * 0.125;
}

Shape input_shape(const Case& c, std::int64_t arg) {
  if (c.workload == "size") return Shape{arg * 32, 4096};  // arg MiB of float64, 32 rows per MiB
  return c.shape;
}

Shape tile_of(const Case& c, std::int64_t arg) {
  if (c.workload == "tiles") return Shape{arg, arg};
  if (c.workload == "rows") return Shape{arg, c.shape[1]};
  if (c.workload == "size") return Shape{256, 256};
  return c.tile;
}

Fixture& fixture_for(const Case& c, std::int64_t arg, Mode mode) {
  const Shape shape = input_shape(c, arg);
  const Shape tile = tile_of(c, arg);
  // The arrays do not depend on the tiling: a new tile edge reuses them.
  const std::string key = std::string(mode_name(mode)) + "|" + c.kernel + "|" + format_shape(shape);
  Cache& g = cache();
  if (g.fixture && g.fixture->key == key) {
    g.fixture->job.tile = tile;
    return *g.fixture;
  }
  g.fixture.reset();  // free the old arrays before making new ones
  auto f = std::make_unique<Fixture>();
  f->key = key;
  const int arity = find_kernel(c.kernel).arity;
  const ArrayPlacement placement(mode, Backing{});
  f->job = JobRequest{c.kernel, {}, {}, tile, {}};
  for (int i = 0; i < arity; ++i) {
    f->job.inputs.push_back(placement.make(DType::float64, shape, ArrayRole::input));
    fill(f->job.inputs.back().array, static_cast<unsigned>(i + 1));
  }
  const ArraySpec out = output_spec(f->job);
  f->job.output = placement.make(out.dtype, out.shape, ArrayRole::output);
  f->array_bytes = f->job.inputs[0].array.bytes();
  const std::uint64_t out_bytes = *byte_count(out.shape, dtype_size(out.dtype));
  f->bytes_per_run = static_cast<std::uint64_t>(arity) * f->array_bytes + (out.shape.empty() ? 0 : out_bytes);
  g.fixture = std::move(f);
  return *g.fixture;
}

// A warm pool for (mode, workers); `first` lets share mode's initializer attach its segments.
Pool& pool_for(Mode mode, int workers, const JobRequest& first, bool& fresh) {
  Cache& g = cache();
  fresh = false;
  if (g.pool && g.pool_mode == mode && g.pool_workers == workers) return *g.pool;
  g.pool.reset();
  // No PSS sampling in timed runs: each sample walks every process's page tables (tens of ms
  // for GiB-sized arrays). run_case measures memory once, untimed.
  g.pool.emplace(Pool::start(PoolOptions{.workers = workers, .mode = mode, .worker_executable = kSelf, .sample_memory = false}, &first));
  g.pool_mode = mode;
  g.pool_workers = workers;
  fresh = true;
  return *g.pool;
}

}  // namespace

void run_case(benchmark::State& state, const Case& c, Mode mode) {
  const bool has_arg = c.workload != "seed";
  const std::int64_t arg = has_arg ? state.range(0) : 0;
  const int workers = static_cast<int>(state.range(has_arg ? 1 : 0));
  Pool* pool = nullptr;
  Fixture* f = nullptr;
  try {
    const std::string previous = cache().fixture ? cache().fixture->key : std::string();
    f = &fixture_for(c, arg, mode);
    bool fresh = false;
    pool = &pool_for(mode, workers, f->job, fresh);
    // One untimed run whenever something is new: workers attach and pre-fault the segments,
    // the output's pages exist. The timed runs measure a warm pool, as a service would see it.
    if (fresh || previous != f->key) pool->run(f->job);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  double compute_s = 0;
  std::uint64_t copied = 0;
  std::int64_t tiles = 0;
  for (auto _ : state) {
    try {
      const JobStats s = pool->run(f->job);
      compute_s += s.compute_s;
      copied = s.bytes_copied;
      tiles = s.tiles;
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
  }
  if (state.error_occurred()) return;
  // Memory, after the timed runs: the parent's and the workers' PSS with every page touched.
  // Fork mode's workers live only during a job, so it samples one more job instead.
  std::uint64_t peak_pss = 0;
  try {
    if (mode == Mode::fork) {
      Pool sampled = Pool::start(PoolOptions{.workers = workers, .mode = mode, .worker_executable = kSelf});
      peak_pss = sampled.run(f->job).peak_pss_bytes;
    } else {
      peak_pss = pss_bytes_with(pool->worker_pids());
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const auto runs = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(f->bytes_per_run) * state.iterations());
  state.counters["tiles_per_s"] = benchmark::Counter(static_cast<double>(tiles) * runs, benchmark::Counter::kIsRate);
  state.counters["peak_pss_bytes"] = static_cast<double>(peak_pss);
  state.counters["compute_s"] = compute_s / std::max(runs, 1.0);
  state.counters["bytes_copied"] = static_cast<double>(copied);
  state.counters["tiles"] = static_cast<double>(tiles);
  state.counters["workers"] = workers;
  state.counters["array_bytes"] = static_cast<double>(f->array_bytes);
  if (mode == Mode::fork) state.counters["fork_s"] = pool->spawn_seconds();
  state.SetLabel(c.kernel + " " + format_shape(f->job.inputs[0].array.shape()) + " tile " + format_shape(f->job.tile));
}

void run_pool_start(benchmark::State& state, Mode mode) {
  const int workers = static_cast<int>(state.range(0));
  // Start-up alone: no warm pool is kept around while this is measured.
  cache().pool.reset();
  Fixture* f = nullptr;
  try {
    f = &fixture_for(Case{"add", "seed", {365, 16, 16}, {4, 4}}, 0, mode);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  double spawn_s = 0;
  std::optional<Pool> pool;
  for (auto _ : state) {
    try {
      // tilepool-worker, as `tilepool run` starts: what a user's pool costs to start.
      pool.emplace(Pool::start(PoolOptions{.workers = workers, .mode = mode}, &f->job));
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
    state.PauseTiming();
    spawn_s += pool->spawn_seconds();
    pool.reset();  // stopping the workers is not start-up
    state.ResumeTiming();
  }
  if (state.error_occurred()) return;
  state.counters["spawn_s"] = spawn_s / std::max<double>(1, static_cast<double>(state.iterations()));
  state.counters["workers"] = workers;
}

void release_cached() {
  cache().pool.reset();
  cache().fixture.reset();
}

}  // namespace tilepool::bench
