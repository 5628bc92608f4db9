// multiprocessing.Array('d', n) with its lock, in C++.
//
// mp.Array puts a ctypes array and a lock in shared memory; forked children inherit both, and
// every read-modify-write of the array must hold the lock. Here a tilepool::Segment holds the
// same two things: a process-shared mutex (Boost.Interprocess's interprocess_mutex, a pthread
// mutex with PTHREAD_PROCESS_SHARED) and the counters. Four forked processes add 1 to every
// counter, 2000 times each, three ways:
//   - under the lock, once per update: correct, and every update pays for the lock;
//   - without the lock: wrong (updates are lost when two processes interleave);
//   - adding into a private array and taking the lock once at the end: correct and cheap.
//
// Python twin: mp_array_lock.py. Run: build/release/bin/example-mp_array_lock
#include <atomic>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <new>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/shared/segment.hpp"

namespace {

namespace bip = boost::interprocess;
using tilepool::examples::run_forked;

constexpr int kProcesses = 4;
constexpr int kRounds = 2000;
constexpr Eigen::Index kCounters = 4096;

// What mp.Array('d', 4096) is, a lock beside 4096 doubles in shared memory, plus what the demo
// needs to start the processes together and time them (mp.Barrier and a RawArray in Python).
struct SharedCounters {
  bip::interprocess_mutex lock;        // arr.get_lock()
  double values[kCounters] = {};       // arr.get_obj()
  std::atomic<int> arrived{0};         // the start line: nobody starts before everybody is there
  double seconds[kProcesses] = {};     // each process's time for its rounds

  // np.frombuffer(arr.get_obj()): an Eigen view of the shared doubles, no copy.
  Eigen::Map<Eigen::ArrayXd> counters() { return {values, kCounters}; }

  // Spins rather than sleeps: a process that sleeps here may wake after the others are done.
  void wait_for_everyone() {
    arrived.fetch_add(1);
    while (arrived.load() < kProcesses) {
    }
  }
};

// Every update under the lock: `with arr.get_lock(): counters += 1`.
void add_locked(SharedCounters& shared) {
  for (int r = 0; r < kRounds; ++r) {
    bip::scoped_lock<bip::interprocess_mutex> hold(shared.lock);
    shared.counters() += 1.0;
  }
}

// No lock: each process reads a counter, adds one and writes it back, and another process may
// have written in between; its update is then lost. (std::atomic_ref makes each load and store
// well-defined C++ without making the read-modify-write atomic: a plain `+= 1` on memory that
// other processes write is a data race, which the compiler may turn into anything, such as
// one `+= 2000` at the end.)
void add_unlocked(SharedCounters& shared) {
  for (int r = 0; r < kRounds; ++r) {
    for (double& value : shared.values) {
      std::atomic_ref<double> v(value);
      v.store(v.load(std::memory_order_relaxed) + 1.0, std::memory_order_relaxed);
    }
  }
}

// Work in private memory, then take the lock once to publish: the cheap correct way.
void add_batched(SharedCounters& shared) {
  Eigen::ArrayXd local = Eigen::ArrayXd::Zero(kCounters);
  for (int r = 0; r < kRounds; ++r) local += 1.0;
  bip::scoped_lock<bip::interprocess_mutex> hold(shared.lock);
  shared.counters() += local;
}

struct Outcome {
  double total = 0;
  double slowest_ms = 0;  // the slowest process's time for its rounds
};

// Zeroes the counters, lets kProcesses forked children run `add` from a common start, and
// sums what they left.
Outcome run(SharedCounters& shared, void (*add)(SharedCounters&)) {
  shared.counters().setZero();
  shared.arrived = 0;
  run_forked(kProcesses, [&](int index) {
    shared.wait_for_everyone();
    const auto start = std::chrono::steady_clock::now();
    add(shared);
    shared.seconds[index] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  });
  return {shared.counters().sum(), 1e3 * Eigen::Map<Eigen::ArrayXd>(shared.seconds, kProcesses).maxCoeff()};
}

}  // namespace

int main() {
  try {
    // The segment is named, but forked children never use the name: they inherit the mapping,
    // as mp.Array's children do. The parent created it, so the parent's handle removes it.
    tilepool::Segment segment = tilepool::Segment::create(tilepool::examples::segment_name("mp_array_lock"),
                                                          sizeof(SharedCounters));
    auto* shared = new (segment.data()) SharedCounters{};  // constructs the mutex in place

    constexpr double expected = static_cast<double>(kProcesses) * kRounds * kCounters;
    const Outcome locked = run(*shared, add_locked);
    const Outcome unlocked = run(*shared, add_unlocked);
    const Outcome batched = run(*shared, add_batched);
    shared->~SharedCounters();

    std::printf("lock per update:      %8.0f of %.0f updates kept, slowest process %6.2f ms\n", locked.total, expected,
                locked.slowest_ms);
    std::printf("no lock:              %8.0f of %.0f updates kept, slowest process %6.2f ms  (%.0f lost: varies from run to run, 0 if the processes did not overlap)\n",
                unlocked.total, expected, unlocked.slowest_ms, expected - unlocked.total);
    std::printf("one lock per process: %8.0f of %.0f updates kept, slowest process %6.2f ms\n", batched.total, expected,
                batched.slowest_ms);
    std::printf("result: %d processes x %d rounds x %d counters: locked total=%.0f batched total=%.0f expected=%.0f\n",
                kProcesses, kRounds, static_cast<int>(kCounters), locked.total, batched.total, expected);
    return locked.total == expected && batched.total == expected ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-mp_array_lock: error: %s\n", e.what());
    return 1;
  }
}
