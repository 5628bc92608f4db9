#pragma once
// Private to runner/: one worker process, started with Boost.Process. Share and copy modes'
// workers are both of this kind; only their arguments differ.

#include <sys/types.h>

#include <boost/process/child.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/unique_fd.hpp"

namespace tilepool::detail {

/// A worker process and our ends of its stdin and stdout pipes. EOF on its stdin tells it the
/// runner is gone. Fixed in place (neither copied nor moved: held by unique_ptr, made by start);
/// the destructor stops it (see stop) and never throws.
class WorkerProcess {
 public:
  /// Starts `exe kWorkerFlag args...`. Its pipes are close-on-exec from birth (pipe2), so no
  /// other worker, started at the same moment by another thread, inherits them. Throws
  /// Error(system).
  static std::unique_ptr<WorkerProcess> start(const std::filesystem::path& exe, const std::vector<std::string>& args);
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;
  ~WorkerProcess();

  /// Waits for the worker's "ready" line; throws Error(system) naming `who` if it exits first
  /// or says nothing for 10 s, Error(interrupted) as soon as the user's signal arrives.
  void await_ready(const std::string& who);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] int stdin_fd() const noexcept { return to_fd_.get(); }
  [[nodiscard]] int stdout_fd() const noexcept { return from_fd_.get(); }
  /// The wait status, once, if the process has exited (it is reaped then).
  std::optional<int> poll_exit();
  /// True once the process has exited (reaped, or reaped now).
  [[nodiscard]] bool exited() { return reaped_ || poll_exit().has_value(); }
  /// The wait status of an exited process.
  [[nodiscard]] int exit_status() const noexcept { return status_; }
  /// Sends SIGKILL (works on stopped processes too) and returns at once; poll_exit or stop reaps.
  void kill() noexcept;
  /// Closes our pipe ends: the worker sees EOF.
  void close_pipes() noexcept;
  /// Lets it exit on its own until `deadline`, then SIGKILLs it, and reaps it. Never throws.
  void stop(std::chrono::steady_clock::time_point deadline) noexcept;

 private:
  WorkerProcess() = default;
  boost::process::child child_;
  pid_t pid_ = 0;
  UniqueFd to_fd_;    // our end of its stdin
  UniqueFd from_fd_;  // our end of its stdout
  bool reaped_ = false;
  int status_ = 0;
};

/// Stops every worker at once: closes all their pipes, lets them exit until one shared deadline
/// (none after the user's SIGINT/SIGTERM/SIGHUP), SIGKILLs the rest together, and reaps them all.
void stop_all(const std::vector<WorkerProcess*>& workers, std::chrono::milliseconds grace) noexcept;

/// Descriptors the runner keeps per worker process: our ends of its stdin and stdout pipes.
inline constexpr int kDescriptorsPerWorker = 2;
/// Makes sure this process may open what `workers` more worker processes need (kDescriptorsPerWorker
/// each, beside what is open now): raises the soft RLIMIT_NOFILE up to the hard limit if it must,
/// else throws Error(usage) saying how many descriptors they need and what the limit is. `what`
/// names them ("share-mode workers").
void reserve_descriptors(int workers, std::string_view what);

/// Sets SIGINT, SIGTERM and SIGHUP to be ignored in this (worker) process: they are the user's
/// signals to the runner, which stops its workers itself. Async-signal-safe (for after fork).
void ignore_stop_signals() noexcept;

/// The program started as workers: PoolOptions::worker_executable, else $TILEPOOL_WORKER, else
/// the tilepool-worker that belongs to this libtilepool_runner: LIBDIR/../bin/tilepool-worker,
/// then LIBDIR/../libexec/tilepool-worker, where LIBDIR is where the loaded library is (dladdr),
/// not where the program is. Throws Error(system) naming what it tried if none can be run.
std::filesystem::path find_worker_executable(const PoolOptions& options);
/// The directory of the loaded libtilepool_runner (empty if it cannot be told).
std::filesystem::path runner_library_directory();

}  // namespace tilepool::detail
