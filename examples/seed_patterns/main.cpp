// Every pattern on one job, in C++: the twins of seed_patterns.py.
//
// The seed workload is out = a + b over float64 arrays of shape (365, 16, 16), in 16 tiles of
// 365x4x4 (the last two axes), on 2 worker processes; worker w adds tiles w, w+2, ... Each
// pattern does that same job, in as few lines as the pattern allows, so that
// scripts/pattern_costs.py can time each one end to end and measure its memory. The other
// folders of examples/ explain the patterns; this program only compares them.
//
// Usage: example-seed_patterns [PATTERN]   (no PATTERN: all of them, one after the other)
// Python twin: seed_patterns.py. Both print the same result line.
#include <sys/mman.h>

#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <cstdio>
#include <exception>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/runner/pool.hpp"

namespace {

namespace bip = boost::interprocess;
namespace bp = boost::process;
using tilepool::examples::run_forked;
using tilepool::examples::segment_name;

constexpr std::int64_t kPlanes = 365, kRows = 16, kCols = 16, kTile = 4;
constexpr std::int64_t kN = kPlanes * kRows * kCols;
constexpr std::int64_t kTilesPerAxis = kCols / kTile;
constexpr std::int64_t kTileCount = (kRows / kTile) * kTilesPerAxis;
constexpr int kWorkers = 2;
const tilepool::Shape kShape{kPlanes, kRows, kCols};

// Where a pattern keeps the three arrays (C order, kN doubles each).
struct Arrays {
  double* a;
  double* b;
  double* out;
};

Eigen::Map<Eigen::ArrayXd> whole(double* p) { return {p, kN}; }

void fill_inputs(const Arrays& x) {
  whole(x.a) = Eigen::ArrayXd::NullaryExpr(kN, [](Eigen::Index k) { return static_cast<double>(k % 97); });
  whole(x.b) = Eigen::ArrayXd::NullaryExpr(kN, [](Eigen::Index k) { return static_cast<double>(3 * k % 89); });
}

// One tile of out = a + b: its 365 planes of 4x4, Eigen maps with the array's row stride.
void add_tile(const Arrays& x, std::int64_t t) {
  using Plane = Eigen::Map<tilepool::PlaneTypes<double>::Matrix, 0, Eigen::OuterStride<>>;
  const std::int64_t r0 = t / kTilesPerAxis * kTile, c0 = t % kTilesPerAxis * kTile;
  for (std::int64_t p = 0; p < kPlanes; ++p) {
    const std::int64_t at = (p * kRows + r0) * kCols + c0;
    const auto plane = [&](double* base) { return Plane(base + at, kTile, kTile, Eigen::OuterStride<>(kCols)); };
    plane(x.out) = plane(x.a) + plane(x.b);
  }
}

// What every worker does: its tiles of out = a + b.
void add_tiles(int worker, const Arrays& x) {
  for (std::int64_t t = worker; t < kTileCount; t += kWorkers) add_tile(x, t);
}

struct Outcome {
  double sum = 0;
  bool right = false;
};

Outcome check(const Arrays& x) { return {whole(x.out).sum(), (whole(x.out) == whole(x.a) + whole(x.b)).all()}; }

Arrays arrays_of(const tilepool::ArraySegment& a, const tilepool::ArraySegment& b, const tilepool::ArraySegment& out) {
  return {a.view<double>().data(), b.view<double>().data(), out.view<double>().data()};
}

tilepool::ArraySegment create(const std::string& role) {
  return tilepool::ArraySegment::create(segment_name(role), tilepool::DType::float64, kShape);
}

// Starts kWorkers copies of this program that attach the named segments (the spawn start
// method's way in: nothing is inherited) and waits for them.
void spawn_attachers(const std::vector<std::string>& names) {
  std::vector<bp::child> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back(tilepool::examples::self_executable().string(),
                         bp::args({"--attach", std::to_string(w), names[0], names[1], names[2]}));
  }
  for (auto& w : workers) {
    w.wait();
    if (w.exit_code() != 0) throw std::runtime_error("a worker failed");
  }
}

// --- the patterns ---------------------------------------------------------------------------

// No pattern: Eigen in the one process, the floor to compare with.
Outcome one_process() {
  std::vector<double> a(kN), b(kN), out(kN);
  const Arrays x{a.data(), b.data(), out.data()};
  fill_inputs(x);
  whole(x.out) = whole(x.a) + whole(x.b);
  return check(x);
}

// mp.Array: a segment holding a process-shared mutex beside the arrays; forked workers write
// out under the lock.
Outcome mp_array_lock() {
  struct Locked {
    bip::interprocess_mutex lock;
    double a[kN], b[kN], out[kN];
  };
  tilepool::Segment segment = tilepool::Segment::create(segment_name("lock"), sizeof(Locked));
  auto* shared = new (segment.data()) Locked;
  const Arrays x{shared->a, shared->b, shared->out};
  fill_inputs(x);
  run_forked(kWorkers, [&](int worker) {
    for (std::int64_t t = worker; t < kTileCount; t += kWorkers) {
      bip::scoped_lock<bip::interprocess_mutex> hold(shared->lock);
      add_tile(x, t);
    }
  });
  const Outcome outcome = check(x);
  shared->~Locked();
  return outcome;
}

// RawArray: three segments, no lock; forked workers write disjoint tiles.
Outcome raw_array() {
  const auto a = create("a"), b = create("b"), out = create("out");
  const Arrays x = arrays_of(a, b, out);
  fill_inputs(x);
  run_forked(kWorkers, [&](int worker) { add_tiles(worker, x); });
  return check(x);
}

// Pool(initializer=...): tilepool's share mode. Spawned tilepool-worker processes attach the
// segments once; tile indices go through the control block.
Outcome pool_initializer() {
  const auto a = create("a"), b = create("b"), out = create("out");
  const Arrays x = arrays_of(a, b, out);
  fill_inputs(x);
  const tilepool::JobRequest job{"add", {tilepool::JobArray::of(a), tilepool::JobArray::of(b)},
                                 tilepool::JobArray::of(out), {kTile, kTile}, {}};
  tilepool::Pool pool = tilepool::Pool::start({.workers = kWorkers, .mode = tilepool::Mode::share}, &job);
  pool.run(job);
  return check(x);
}

// fork's copy-on-write: a and b in private memory, inherited by fork; out in a MAP_SHARED
// anonymous mapping made before the fork.
Outcome fork_cow() {
  std::vector<double> a(kN), b(kN);
  void* shared = ::mmap(nullptr, kN * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) throw std::runtime_error("mmap failed");
  const Arrays x{a.data(), b.data(), static_cast<double*>(shared)};
  fill_inputs(x);
  run_forked(kWorkers, [&](int worker) { add_tiles(worker, x); });
  const Outcome outcome = check(x);
  ::munmap(shared, kN * sizeof(double));
  return outcome;
}

// SharedMemoryManager: the scope's handles own the segments; spawned workers attach by name.
Outcome shared_memory_manager() {
  const auto a = create("a"), b = create("b"), out = create("out");
  const Arrays x = arrays_of(a, b, out);
  fill_inputs(x);
  spawn_attachers({a.name(), b.name(), out.name()});
  return check(x);
}  // the handles remove the names here

// SharedArray: segments created by name, let go of by their creator, attached by name by two
// other programs, deleted by name.
Outcome sharedarray_create_attach() {
  const std::vector<std::string> names{segment_name("a"), segment_name("b"), segment_name("out")};
  struct RemoveNames {  // SharedArray.delete, on every way out
    const std::vector<std::string>& names;
    ~RemoveNames() {
      for (const auto& n : names) {
        try {
          tilepool::remove_segment(n);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "example-seed_patterns: %s\n", e.what());
        }
      }
    }
  } remove{names};
  for (const auto& n : names) {
    auto s = tilepool::ArraySegment::create(n, tilepool::DType::float64, kShape);
    s.segment().release_name();  // the array outlives this handle
  }
  const auto a = tilepool::ArraySegment::attach(names[0]), b = tilepool::ArraySegment::attach(names[1]);
  const auto out = tilepool::ArraySegment::attach(names[2]);
  const Arrays x = arrays_of(a, b, out);
  fill_inputs(x);
  spawn_attachers(names);
  return check(x);
}

// The pitfall of pool.map over slices: tilepool's copy mode sends each tile's bytes to a worker
// and the result back over pipes.
Outcome pool_map_slices() {
  const auto a = create("a"), b = create("b"), out = create("out");
  const Arrays x = arrays_of(a, b, out);
  fill_inputs(x);
  const tilepool::JobRequest job{"add", {tilepool::JobArray::of(a), tilepool::JobArray::of(b)},
                                 tilepool::JobArray::of(out), {kTile, kTile}, {}};
  tilepool::Pool::start({.workers = kWorkers, .mode = tilepool::Mode::copy}).run(job);
  return check(x);
}

// A spawned worker of shared_memory_manager and sharedarray_create_attach.
int attach_and_add(int worker, const std::string& a_name, const std::string& b_name, const std::string& out_name) {
  const auto a = tilepool::ArraySegment::attach(a_name), b = tilepool::ArraySegment::attach(b_name);
  const auto out = tilepool::ArraySegment::attach(out_name);
  add_tiles(worker, arrays_of(a, b, out));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 5 && args[0] == "--attach") return attach_and_add(std::stoi(args[1]), args[2], args[3], args[4]);

    const std::vector<std::pair<std::string, Outcome (*)()>> patterns{
        {"one_process", one_process},   {"mp_array_lock", mp_array_lock},
        {"raw_array", raw_array},       {"pool_initializer", pool_initializer},
        {"fork_cow", fork_cow},         {"shared_memory_manager", shared_memory_manager},
        {"sharedarray_create_attach", sharedarray_create_attach}, {"pool_map_slices", pool_map_slices}};
    std::set<std::string> sums;
    bool right = true;
    int ran = 0;
    for (const auto& [name, pattern] : patterns) {
      if (!args.empty() && args[0] != name) continue;
      const Outcome outcome = pattern();
      std::printf("%s: sum=%.0f right=%s\n", name.c_str(), outcome.sum, outcome.right ? "True" : "False");
      sums.insert(std::to_string(static_cast<long long>(outcome.sum)));
      right = right && outcome.right;
      ++ran;
    }
    if (ran == 0) {
      std::fprintf(stderr, "usage: example-seed_patterns [PATTERN]\n");
      return 2;
    }
    std::string joined;
    for (const auto& s : sums) joined += (joined.empty() ? "" : "/") + s;
    std::printf("result: seed add %s float64 in %lld tiles by %d workers, %d pattern(s): sum=%s right=%s\n",
                tilepool::format_shape(kShape).c_str(), static_cast<long long>(kTileCount), kWorkers, ran,
                joined.c_str(), right ? "yes" : "no");
    return right ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-seed_patterns: error: %s\n", e.what());
    return 1;
  }
}
