// Pool(initializer=init, initargs=(names, shape, dtype)), in C++: tilepool's own main path.
//
// The parent puts the inputs and the output in named segments (ArraySegment). Pool::start
// spawns tilepool-worker processes; each one's command line carries the name of the job's
// control block, and that name is the initializer's argument: the worker attaches the
// control block, reads the segment names, shapes and dtypes from it, attaches the segments
// once and says "ready". pool.run(job) then hands out tile indices through the control block
// (an atomic cursor, no pipe traffic per tile); each worker runs the kernel `add` on its
// tiles and writes them straight into the output segment. No array bytes cross a pipe.
//
// The seed workload: out = a + b over a (365, 16, 16) float64 array, in 16 tiles of 365x4x4.
//
// Python twin: pool_initializer.py. Run: build/release/bin/example-pool_initializer
#include <cstdio>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/runner/pool.hpp"

namespace {

using tilepool::examples::segment_name;

// The whole array as one Eigen column of its elements (C order).
Eigen::Map<Eigen::ArrayXd> elements(const tilepool::ArraySegment& s) {
  return {s.view<double>().data(), s.view<double>().size()};
}

// What a worker was started with: its arguments from /proc/PID/cmdline, joined by spaces.
std::string command_line(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  while (!text.empty() && text.back() == '\0') text.pop_back();
  for (char& c : text) c = c == '\0' ? ' ' : c;
  return text;
}

}  // namespace

int main() {
  try {
    const tilepool::Shape shape{365, 16, 16};
    const auto f64 = tilepool::DType::float64;
    const tilepool::ArraySegment a = tilepool::ArraySegment::create(segment_name("a"), f64, shape);
    const tilepool::ArraySegment b = tilepool::ArraySegment::create(segment_name("b"), f64, shape);
    const tilepool::ArraySegment out = tilepool::ArraySegment::create(segment_name("out"), f64, shape);
    elements(a) = Eigen::ArrayXd::NullaryExpr(elements(a).size(), [](Eigen::Index k) { return static_cast<double>(k % 97); });
    elements(b) = Eigen::ArrayXd::NullaryExpr(elements(b).size(), [](Eigen::Index k) { return static_cast<double>(3 * k % 89); });

    // The job names its arrays by segment: that is all a worker needs to attach them.
    const tilepool::JobRequest job{"add", {tilepool::JobArray::of(a), tilepool::JobArray::of(b)},
                                   tilepool::JobArray::of(out), {4, 4}, {}};
    // Pool(2, initializer=init, initargs=...): the workers attach the first job's segments
    // before they say ready, so the job below starts warm. The pool is reusable: run many jobs.
    tilepool::Pool pool = tilepool::Pool::start(tilepool::PoolOptions{.workers = 2, .mode = tilepool::Mode::share}, &job);
    for (const pid_t pid : pool.worker_pids()) std::printf("worker %d: %s\n", pid, command_line(pid).c_str());
    const tilepool::JobStats stats = pool.run(job);  // pool.map(add_tile, range(16))

    const bool right = (elements(out) == elements(a) + elements(b)).all();
    std::printf("%lld tiles in %.2f ms, array bytes through pipes: %llu, workers ready after %.0f ms\n",
                static_cast<long long>(stats.tiles), stats.compute_s * 1e3,
                static_cast<unsigned long long>(stats.bytes_copied), pool.spawn_seconds() * 1e3);
    std::printf("result: add over %lld tiles of %s float64 by %d workers: sum=%.0f right=%s\n",
                static_cast<long long>(stats.tiles), tilepool::format_shape(shape).c_str(), pool.worker_count(),
                elements(out).sum(), right ? "yes" : "no");
    return right ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-pool_initializer: error: %s\n", e.what());
    return 1;
  }
}
