// tilepool-bench: share vs fork vs copy vs threads, one file per competing implementation
// (modes/share.cpp, fork.cpp, copy.cpp, threads.cpp, plain_loop.cpp) behind this driver.
//
//   tilepool-bench [--full] [Google Benchmark flags]
//
// Names read BM_<Mode>/<kernel>/<workload>/<args>/real_time, where the workload is
//   seed                  365x16x16 float64, 4x4 tiles (the seed workload)
//   tiles/edge:E          4096x4096 float64 (matmul: 1024x1024) in ExE tiles: E=256 is the
//                         bandwidth-bound case, E=16 the dispatch-bound one (65,536 tiles),
//                         E=4 a million tiles
//   rows/rows:R           4096x4096 float64 add in tiles of R whole rows (contiguous blocks, as
//                         the plain loop streams them)
//   size/MiB:M            add over M MiB per array (M*32 x 4096 float64), 256x256 tiles
// and every case runs with 1, 2 and hardware_concurrency workers. The default set is quick
// (about three minutes on two cores); --full adds 1 GiB arrays, every tile edge and kernel.
// The cases the targets are about run 5 times (medians in the JSON's aggregates).
// Only pool.run is timed, on a pool started beforehand; BM_PoolStart times start-up.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "modes/bench_support.hpp"
#include "tilepool/workers/worker.hpp"

namespace tilepool::bench {
namespace {

constexpr int kKeyRepetitions = 5;

struct ModeEntry {
  const char* name;
  Mode mode;
  void (*bm)(benchmark::State&, const Case&);
};

const ModeEntry kModes[] = {
    {"Share", Mode::share, BM_Share},
    {"Fork", Mode::fork, BM_Fork},
    {"Copy", Mode::copy, BM_Copy},
    {"Threads", Mode::threads, BM_Threads},
};

std::vector<std::int64_t> unique_sorted(std::vector<std::int64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

benchmark::internal::Benchmark* add_case(const ModeEntry& m, const Case& c) {
  const std::string name = std::string("BM_") + m.name + "/" + c.kernel + "/" + c.workload;
  return benchmark::RegisterBenchmark(name.c_str(), m.bm, c)->UseRealTime()->Unit(benchmark::kMillisecond);
}

void register_all(bool full) {
  const auto hc = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  const std::vector<std::int64_t> all_workers = unique_sorted({1, 2, hc});
  const std::vector<std::int64_t> main_workers = full ? all_workers : unique_sorted({1, hc});
  const std::vector<std::int64_t> one_count = full ? all_workers : std::vector<std::int64_t>{hc};
  // E=4 is 1,048,576 tiles: the per-tile cost at the scale the control block must now hold.
  const std::vector<std::int64_t> add_edges = full ? std::vector<std::int64_t>{1024, 512, 256, 128, 64, 32, 16, 4}
                                                   : std::vector<std::int64_t>{256, 64, 16, 4};
  const std::vector<std::int64_t> other_edges = {256, 16};
  const std::vector<std::int64_t> matmul_edges = full ? std::vector<std::int64_t>{256, 64, 16} : std::vector<std::int64_t>{256};
  const std::int64_t max_mib = full ? 1024 : 64;

  for (const ModeEntry& m : kModes) {
    add_case(m, Case{"add", "seed", {365, 16, 16}, {4, 4}})->ArgNames({"workers"})->ArgsProduct({main_workers});
    // The cases the targets are about run 5 times; the plots and ratios use the median.
    add_case(m, Case{"add", "tiles", {4096, 4096}, {}})
        ->ArgNames({"edge", "workers"})
        ->ArgsProduct({add_edges, main_workers})
        ->Repetitions(kKeyRepetitions)
        ->DisplayAggregatesOnly(true);
    add_case(m, Case{"add", "rows", {4096, 4096}, {}})
        ->ArgNames({"rows", "workers"})
        ->ArgsProduct({{64}, one_count})
        ->Repetitions(kKeyRepetitions)
        ->DisplayAggregatesOnly(true);
    add_case(m, Case{"add", "size", {}, {256, 256}})
        ->ArgNames({"MiB", "workers"})
        ->RangeMultiplier(4)
        ->Ranges({{1, max_mib}, {hc, hc}});
    for (const char* kernel : {"blur3x3", "sum"}) {
      add_case(m, Case{kernel, "seed", {365, 16, 16}, {4, 4}})->ArgNames({"workers"})->ArgsProduct({one_count});
      add_case(m, Case{kernel, "tiles", {4096, 4096}, {}})->ArgNames({"edge", "workers"})->ArgsProduct({other_edges, one_count});
    }
    add_case(m, Case{"matmul", "tiles", {1024, 1024}, {}})->ArgNames({"edge", "workers"})->ArgsProduct({matmul_edges, one_count});
    // Dispatch alone: a kernel that does nothing, 65,536 and 1,048,576 tiles, 1 and 2 workers.
    add_case(m, Case{"noop", "tiles", {4096, 4096}, {}})
        ->ArgNames({"edge", "workers"})
        ->ArgsProduct({{16, 4}, main_workers})
        ->Repetitions(kKeyRepetitions)
        ->DisplayAggregatesOnly(true);
  }
  benchmark::RegisterBenchmark("BM_PlainLoop/add/tiles/edge:4096", BM_PlainLoop)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(kKeyRepetitions)
      ->DisplayAggregatesOnly(true);
  for (const ModeEntry& m : kModes) {
    const std::string name = std::string("BM_PoolStart/") + mode_name(m.mode).data();
    benchmark::RegisterBenchmark(name.c_str(), run_pool_start, m.mode)
        ->ArgNames({"workers"})
        ->ArgsProduct({all_workers})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
}

std::string first_value(const char* path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      std::string v = colon == std::string::npos ? line : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "unknown";
}

// The machine the numbers come from, in the JSON's context.
void describe_machine(bool full) {
  benchmark::AddCustomContext("cpu_model", first_value("/proc/cpuinfo", "model name"));
  benchmark::AddCustomContext("nproc", std::to_string(std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("mem_total", first_value("/proc/meminfo", "MemTotal"));
  benchmark::AddCustomContext("tilepool_set", full ? "full" : "quick");
}

}  // namespace
}  // namespace tilepool::bench

int main(int argc, char** argv) {
  tilepool::bench::register_noop_kernel();
  // The pools start this program as their workers.
  if (const auto status = tilepool::serve_as_worker_if_asked(argc, argv)) return *status;
  // --full is ours; every other flag goes to Google Benchmark.
  bool full = false;
  if (const char* env = std::getenv("TILEPOOL_BENCH_FULL"); env != nullptr && std::strcmp(env, "1") == 0) full = true;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--full") == 0) {
      full = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  tilepool::bench::register_all(full);
  tilepool::bench::describe_machine(full);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  tilepool::bench::release_cached();
  benchmark::Shutdown();
  return 0;
}
