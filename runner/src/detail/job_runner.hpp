#pragma once
// Private to runner/: the one job runner. It owns a job's life in every mode — validate, post,
// supervise, sample memory, collect stats — and asks its Launcher for what differs.

#include <chrono>
#include <functional>
#include <memory>

#include "detail/launcher.hpp"
#include "detail/supervisor.hpp"

namespace tilepool::detail {

/// Refuses a tile timeout where it cannot be kept: a thread that holds a tile cannot be stopped,
/// so threads mode takes none. Throws SpecError(JobField::tile_timeout). Pool::start and
/// run_job (before any input is opened) call it.
void check_tile_timeout(Mode mode, std::chrono::milliseconds timeout);

/// Pool::start for a job prepared already (run_job): nothing of it is prepared again.
Pool start_pool(const PoolOptions& options, const StagedJob* first_job);

/// Runs jobs on one launcher's workers. Not thread-safe: one job at a time, from one thread.
class JobRunner {
 public:
  /// Starts the launcher for `options.mode`; see Pool::start.
  JobRunner(const PoolOptions& options, const StagedJob* first_job);
  /// Makes a launcher that runs its workers under the runner's supervisor.
  using MakeLauncher = std::function<std::unique_ptr<Launcher>(Supervisor& supervisor)>;
  /// Runs jobs on the launcher `make` returns instead of `options.mode`'s row (the unit tests'
  /// scripted launchers); `options` gives the retry limit, tile timeout and memory sampling.
  JobRunner(const PoolOptions& options, const MakeLauncher& make);
  JobStats run(const JobRequest& job);
  /// Runs a job prepared once by the caller (run_job), as it is.
  JobStats run(const JobRequest& job, const PreparedJob& prepared);
  [[nodiscard]] Launcher& launcher() noexcept { return *launcher_; }
  [[nodiscard]] const Launcher& launcher() const noexcept { return *launcher_; }
  [[nodiscard]] const PoolOptions& options() const noexcept { return options_; }

 private:
  // Sleeps until the posted job completes or fails, supervising and sampling between waits.
  void wait(ControlBlock& control, const JobRequest& job, std::uint64_t& peak_pss);

  PoolOptions options_;
  Supervisor supervisor_;
  std::unique_ptr<Launcher> launcher_;
  std::uint64_t next_job_id_ = 1;
};

}  // namespace tilepool::detail
