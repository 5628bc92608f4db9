#pragma once
// Private to runner/: the one supervisor. Every mode's worker deaths, hung tiles and retry
// limits go through it, so they are judged and worded once.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "detail/launcher.hpp"

namespace tilepool::detail {

/// Watches a job's workers: a dead worker's tiles go back to the queue and it is replaced (where
/// the mode replaces workers); a tile that killed its worker more than max_tile_retries times,
/// or the death of every worker, fails the job through the control block.
class Supervisor {
 public:
  Supervisor(int max_tile_retries, std::chrono::milliseconds tile_timeout)
      : max_tile_retries_(max_tile_retries), tile_timeout_(tile_timeout) {}

  /// Starts watching a new job.
  void begin(ControlBlock& control, const PreparedJob& prepared);
  /// True if a tile held since `since_ns` (monotonic_ns) has outlived the tile timeout.
  [[nodiscard]] bool overdue(std::int64_t since_ns) const noexcept;
  /// "pid 12, signal 9 (Killed)", or "pid 12, killed after the tile timeout of N ms" if the
  /// supervisor killed it for holding a tile too long: how a worker ended, for messages.
  [[nodiscard]] std::string fate(pid_t pid, int wait_status, bool timed_out) const;
  /// A worker died holding `tile` (-1: none); `fate` says how ("pid 12, signal 9 (Killed)").
  /// Requeues its tiles; fails the job if `tile` has now killed too many workers, or if workers
  /// keep dying before they hold any tile (a worker that cannot start its job). Thread-safe.
  void worker_died(int slot, std::int64_t tile, const std::string& fate);
  /// The runner's check between waits (launchers whose workers it supervises): kills workers
  /// that hold a tile too long, handles deaths, replaces the dead.
  void check(Launcher& launcher);
  /// Before a job is posted: replaces workers that died while idle (no tile to blame), and lets
  /// each out of `control`'s last job (one that died inside it, after its last tile, say in its
  /// bound kernel's destructor, never left: the next post_job waited for it for good).
  static void replace_idle_deaths(Launcher& launcher, ControlBlock& control);

 private:
  int max_tile_retries_;
  std::chrono::milliseconds tile_timeout_;
  ControlBlock* control_ = nullptr;
  const PreparedJob* job_ = nullptr;
  std::mutex mutex_;
  std::map<std::int64_t, int> tile_failures_;
  int deaths_without_tile_ = 0;
  std::map<int, bool> killed_for_timeout_;
};

/// "signal 9 (Killed)" or "exit status 2", from a waitpid() status.
std::string describe_wait_status(int status);

}  // namespace tilepool::detail
