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
// Then a process dies while it holds the lock (SIGKILL, half-way through an update). Python's
// lock, like interprocess_mutex, would stay taken forever. A robust mutex (a pthread mutex with
// PTHREAD_MUTEX_ROBUST) does not: the next process to lock it gets the lock *and* EOWNERDEAD,
// the news that the owner died, so it repairs the half-done update, marks the mutex consistent
// and goes on.
//
// Python twin: mp_array_lock.py. Run: build/release/bin/example-mp_array_lock
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

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

// --- A process dies holding the lock ---------------------------------------------------------

// Counters that every update adds 1 to, the number of updates committed (so every counter
// should equal it), and a mutex that survives its owner: process-shared, so other processes
// may lock it, and robust, so the kernel tells the next locker when its owner died.
struct RobustCounters {
  pthread_mutex_t lock;
  double values[kCounters] = {};
  long committed = 0;                  // whole updates done; a repair restores the values from it
  std::atomic<bool> half_done{false};  // the doomed process holds the lock, its update half done

  RobustCounters() {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&lock, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~RobustCounters() { pthread_mutex_destroy(&lock); }
  Eigen::Map<Eigen::ArrayXd> counters() { return {values, kCounters}; }
};

// What a locker found when it took the lock.
struct Locked {
  bool owner_died = false;  // pthread_mutex_lock returned EOWNERDEAD
  long repaired = 0;        // counters it found half-updated and repaired
};

// Locks. If the previous owner died holding the lock, pthread_mutex_lock still gives it to us but
// returns EOWNERDEAD: the data may be half-updated, so we repair it (every counter back to the
// last committed count) and mark the mutex consistent. Unlocking without that would leave the
// mutex unusable for good (ENOTRECOVERABLE).
Locked lock_and_repair(RobustCounters& shared) {
  const int rc = pthread_mutex_lock(&shared.lock);
  if (rc == 0) return {};
  if (rc != EOWNERDEAD) throw std::runtime_error(std::string("pthread_mutex_lock: ") + std::strerror(rc));
  const long broken = (shared.counters() != static_cast<double>(shared.committed)).count();
  shared.counters() = static_cast<double>(shared.committed);  // undo the half-done update
  pthread_mutex_consistent(&shared.lock);
  return {true, broken};
}

// One update, as add_locked does it, with the robust mutex.
Locked update(RobustCounters& shared) {
  const Locked locked = lock_and_repair(shared);
  shared.counters() += 1.0;
  ++shared.committed;
  pthread_mutex_unlock(&shared.lock);
  return locked;
}

struct Recovery {
  int signal = 0;       // what killed the lock's owner
  Locked next_locker;   // what the next process to lock found
  bool right = false;   // after more updates, every counter equals the updates committed
};

// A forked child takes the lock, does half of an update and waits there; the parent kills it
// with SIGKILL, then updates the counters under the same lock, as any other process would.
Recovery kill_lock_holder(RobustCounters& shared) {
  constexpr long kUpdates = 3;
  update(shared);  // one whole update first: committed = 1
  std::fflush(nullptr);
  const pid_t doomed = ::fork();
  if (doomed < 0) throw std::runtime_error("fork failed");
  if (doomed == 0) {
    pthread_mutex_lock(&shared.lock);
    shared.counters().head(kCounters / 2) += 1.0;
    shared.half_done = true;
    for (;;) ::pause();  // killed here, the lock held: no destructor or unlock ever runs
  }
  while (!shared.half_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ::kill(doomed, SIGKILL);
  int status = 0;
  while (::waitpid(doomed, &status, 0) < 0 && errno == EINTR) {
  }
  Recovery r{WIFSIGNALED(status) ? WTERMSIG(status) : 0, update(shared), false};
  for (long i = 1; i < kUpdates; ++i) update(shared);
  r.right = r.next_locker.owner_died && shared.committed == 1 + kUpdates &&
            (shared.counters() == static_cast<double>(shared.committed)).all();
  return r;
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

    // A process dies holding the lock. mp.Array's lock (and interprocess_mutex) would stay taken
    // forever; a robust mutex hands the lock on, with the news.
    tilepool::Segment robust_segment = tilepool::Segment::create(
        tilepool::examples::segment_name("mp_array_lock-robust"), sizeof(RobustCounters));
    auto* robust = new (robust_segment.data()) RobustCounters{};
    const Recovery recovery = kill_lock_holder(*robust);
    std::printf("owner died: a child holding the lock was killed by SIG%s half-way through an update; "
                "lock() -> %s: the next locker got the lock, repaired the %ld of %d counters it "
                "half-updated, marked it consistent and went on: every counter=%ld right=%s\n",
                sigabbrev_np(recovery.signal), recovery.next_locker.owner_died ? "EOWNERDEAD" : "0 (owner not dead?)",
                recovery.next_locker.repaired, static_cast<int>(kCounters), robust->committed,
                recovery.right ? "yes" : "no");
    robust->~RobustCounters();

    std::printf("result: %d processes x %d rounds x %d counters: locked total=%.0f batched total=%.0f expected=%.0f\n",
                kProcesses, kRounds, static_cast<int>(kCounters), locked.total, batched.total, expected);
    return locked.total == expected && batched.total == expected && recovery.right ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-mp_array_lock: error: %s\n", e.what());
    return 1;
  }
}
