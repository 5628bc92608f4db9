// fork mode: the parent keeps the inputs in its own (private) memory and forks the workers after
// loading, per job, so they read the inputs copy-on-write. The control block lives in a
// MAP_SHARED anonymous mapping made before the fork; the output must be memory the children
// share with the parent (a segment, or make_shared_array()). Children run the same tile loop as
// every other mode and _exit when the job is over: no atexit handlers, no destructors, nothing of
// the parent's (test framework, CLI) runs twice.
//
// Supervision: a child that dies mid-job gives its claimed tiles back and the others finish the
// job (children are not replaced: a fork now would not be "after loading" for the next job's
// inputs, and the remaining children suffice); the job fails when every child is gone.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "detail/executor.hpp"
#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace detail {
namespace {

constexpr auto kStopGrace = std::chrono::seconds(2);

// True if [p, p+n) lies in writable mappings shared with children ('s' in /proc/self/maps):
// what a forked child writes there, the parent sees.
bool in_shared_writable_memory(const void* p, std::size_t n) {
  if (n == 0) return true;
  const auto lo = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t hi = lo + n;
  std::uintptr_t covered = lo;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode [path]", addresses in hex, ascending.
    std::uintptr_t start = 0, end = 0;
    const char* s = line.data();
    const char* e = s + line.size();
    auto r1 = std::from_chars(s, e, start, 16);
    if (r1.ec != std::errc() || r1.ptr == e || *r1.ptr != '-') continue;
    auto r2 = std::from_chars(r1.ptr + 1, e, end, 16);
    if (r2.ec != std::errc() || e - r2.ptr < 5) continue;
    const char* perms = r2.ptr + 1;
    if (end <= covered) continue;
    if (start > covered) return false;  // a hole
    if (perms[1] != 'w' || perms[3] != 's') return false;
    covered = end;
    if (covered >= hi) return true;
  }
  return false;
}

// Touches every page of the output once, writable, so the compute phase takes no page faults
// (MAP_SHARED pages are not inherited mapped: each child would fault them in on first write).
void prefault(const AnyArray& output) {
  const std::size_t bytes = output.bytes();
  if (bytes == 0) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<std::uintptr_t>(output.data()) / page * page;
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(output.data()) + bytes;
  // Older kernels lack MADV_POPULATE_WRITE (EINVAL): then the first write faults, as before.
  (void)::madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_WRITE);
}

// A forked worker: runs the job's tiles (and retried ones) until the parent asks it to stop.
[[noreturn]] void child_main(ControlBlock& control, int slot, pid_t parent, const std::vector<AnyArray>& inputs,
                             const AnyArray& output, bool writes_output) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(3);  // the parent died before prctl took effect
  int status = 0;
  try {
    control.worker(slot).pid.store(::getpid(), std::memory_order_release);
    if (writes_output) prefault(output);
    serve_jobs(
        control, slot, [&](const JobDescriptor& desc) { return bind_job(desc, inputs, output); },
        [parent] { return ::getppid() == parent; });
  } catch (...) {  // serve_jobs reports kernel errors itself; nothing may escape a child
    status = 2;
  }
  ::_exit(status);
}

class ForkExecutor final : public Executor {
 public:
  explicit ForkExecutor(const PoolOptions& options) : options_(options) {}

  JobStats run(const JobRequest& job, const PreparedJob& prepared) override {
    const AnyArray& output = job.output.array;
    // A reduction's 0-d result is written by the parent; a map's tiles by the children.
    const bool writes_output = prepared.kernel->reduction == Reduction::none;
    if (writes_output && !in_shared_writable_memory(output.data(), output.bytes())) {
      throw Error(Errc::usage, "fork mode: the output of " + std::string(prepared.kernel->name) +
                                   " must be in memory shared with the workers (a segment, or make_shared_array()); "
                                   "it is in this process's private memory, so their writes would be lost");
    }
    std::vector<AnyArray> inputs;
    for (const JobArray& in : job.inputs) inputs.push_back(in.array);

    const std::int64_t capacity = std::max<std::int64_t>(1, prepared.grid.tile_count());
    AnonymousRegion region(ControlBlock::bytes_for(capacity));
    ControlBlock& control = *ControlBlock::create_in(region.data(), region.size(), capacity);
    control.post_job(describe(job, prepared, Backing{}, next_job_id_++));

    Children children(*this, control);
    const auto t0 = std::chrono::steady_clock::now();
    for (int slot = 0; slot < options_.workers; ++slot) {
      const pid_t parent = ::getpid();
      const pid_t pid = ::fork();
      if (pid == 0) child_main(control, slot, parent, inputs, output, writes_output);
      if (pid < 0) throw system_error("fork of worker " + std::to_string(slot), errno);
      children.add(slot, pid);
    }
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::uint64_t peak = 0;
    auto next_sample = std::chrono::steady_clock::now();
    wait_for_job(control, job, [&] {
      children.supervise(prepared);
      if (options_.sample_memory && std::chrono::steady_clock::now() >= next_sample) {
        peak = std::max(peak, pss_bytes_with(worker_pids()));
        next_sample += std::chrono::milliseconds(100);
      }
    });
    if (options_.sample_memory) peak = std::max(peak, pss_bytes_with(worker_pids()));  // every page is touched now: the peak
    finish_reduction(control, prepared, output);
    JobStats stats = stats_of(control, prepared);
    stats.peak_pss_bytes = peak;
    return stats;
  }

  Mode mode() const noexcept override { return Mode::fork; }
  int worker_count() const noexcept override { return options_.workers; }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  std::int64_t tile_capacity() const noexcept override { return options_.tile_capacity; }
  // The children of the job running now (none between jobs). Safe to call from another thread
  // while run() runs (tests kill a child this way).
  std::vector<pid_t> worker_pids() const override {
    const std::lock_guard lock(pids_mutex_);
    return pids_;
  }

 private:
  // The children of one job: watched while it runs, stopped and reaped when it ends (normally or
  // by an exception), never left behind.
  class Children {
   public:
    Children(ForkExecutor& owner, ControlBlock& control) : owner_(owner), control_(control) {}
    Children(const Children&) = delete;
    Children& operator=(const Children&) = delete;
    ~Children() { stop(); }

    void add(int slot, pid_t pid) {
      live_[slot] = pid;
      const std::lock_guard lock(owner_.pids_mutex_);
      owner_.pids_.push_back(pid);
    }

    // Reaps children that died mid-job: their tiles go back to the queue for the others. Throws
    // Error(job_failed) when none is left, or when one tile has killed too many of them.
    void supervise(const PreparedJob& prepared) {
      for (auto it = live_.begin(); it != live_.end();) {
        const auto [slot, pid] = *it;
        if (timed_out(slot)) ::kill(pid, SIGKILL);  // a hung tile: SIGKILL also ends a stopped child
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == 0 || (r < 0 && errno == EINTR)) {
          ++it;
          continue;
        }
        // Dead (or reaped by someone else: ECHILD). Its claimed tiles go back to the queue.
        std::string how = r == pid ? describe_wait_status(status) : "status unknown";
        if (std::exchange(killed_for_timeout_[slot], false)) {
          how = "killed after the tile timeout of " + std::to_string(owner_.options_.tile_timeout.count()) + " ms";
        }
        last_death_ = "pid " + std::to_string(pid) + ", " + how;
        const std::int64_t tile = control_.worker(slot).current_tile.load(std::memory_order_acquire);
        control_.requeue_tiles_of(slot);
        it = live_.erase(it);
        forget_pid(pid);
        const std::string kernel(prepared.kernel->name);
        if (tile >= 0 && ++tile_failures_[tile] > owner_.options_.max_tile_retries) {
          throw Error(Errc::job_failed, kernel + ": tile " + std::to_string(tile) + " " + format_box(prepared.grid.box(tile)) +
                                            " killed its worker " + std::to_string(tile_failures_[tile]) + " times (last: " +
                                            last_death_ + ")");
        }
        if (live_.empty() && !control_.job_complete()) {
          throw Error(Errc::job_failed, kernel + ": every fork-mode worker died before the job was done (last: " + last_death_ +
                                            (tile >= 0 ? ", while running tile " + std::to_string(tile) + " " +
                                                             format_box(prepared.grid.box(tile))
                                                       : std::string()) +
                                            ")");
        }
      }
    }

   private:
    bool timed_out(int slot) {
      const auto limit = owner_.options_.tile_timeout;
      if (limit.count() <= 0) return false;
      const WorkerSlot& s = control_.worker(slot);
      if (s.current_tile.load(std::memory_order_acquire) < 0) return false;
      const std::int64_t held_ns = monotonic_ns() - s.claimed_at_ns.load(std::memory_order_relaxed);
      if (held_ns <= std::chrono::duration_cast<std::chrono::nanoseconds>(limit).count()) return false;
      killed_for_timeout_[slot] = true;
      return true;
    }

    void forget_pid(pid_t pid) noexcept {
      const std::lock_guard lock(owner_.pids_mutex_);
      std::erase(owner_.pids_, pid);
    }

    // Asks every child to exit, waits a little, then SIGKILLs the stragglers. Never throws.
    void stop() noexcept {
      control_.request_stop();
      const auto deadline = std::chrono::steady_clock::now() + kStopGrace;
      auto pause = std::chrono::microseconds(20);
      while (!live_.empty()) {
        for (auto it = live_.begin(); it != live_.end();) {
          int status = 0;
          const pid_t r = ::waitpid(it->second, &status, WNOHANG);
          if (r == 0 || (r < 0 && errno == EINTR)) {
            ++it;
          } else {
            forget_pid(it->second);
            it = live_.erase(it);
          }
        }
        if (live_.empty()) break;
        if (std::chrono::steady_clock::now() >= deadline) {
          for (const auto& [slot, pid] : live_) ::kill(pid, SIGKILL);
          for (const auto& [slot, pid] : live_) {
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            forget_pid(pid);
          }
          live_.clear();
          break;
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(2000));
      }
    }

    ForkExecutor& owner_;
    ControlBlock& control_;
    std::map<int, pid_t> live_;  // slot -> pid
    std::map<std::int64_t, int> tile_failures_;
    std::map<int, bool> killed_for_timeout_;
    std::string last_death_;
  };

  PoolOptions options_;
  std::uint64_t next_job_id_ = 1;
  double spawn_s_ = 0;
  mutable std::mutex pids_mutex_;
  std::vector<pid_t> pids_;
};

}  // namespace

std::unique_ptr<Executor> make_fork_executor(const PoolOptions& options) { return std::make_unique<ForkExecutor>(options); }

}  // namespace detail

AnyArray make_shared_array(DType dtype, const Shape& shape) {
  const auto bytes = byte_count(shape, dtype_size(dtype));
  if (!bytes) throw Error(Errc::usage, "array of shape " + format_shape(shape) + " is too large");
  // mmap needs at least one byte; MAP_POPULATE pre-faults the parent's side.
  void* p = ::mmap(nullptr, std::max<std::size_t>(*bytes, 1), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) throw system_error("mmap of a " + std::to_string(*bytes) + "-byte shared array", errno);
  const std::size_t length = std::max<std::size_t>(*bytes, 1);
  std::shared_ptr<void> owner(p, [length](void* q) { ::munmap(q, length); });
  return AnyArray(std::move(owner), static_cast<std::byte*>(p), dtype, shape);
}

}  // namespace tilepool
