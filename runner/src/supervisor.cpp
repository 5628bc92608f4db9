// The one supervisor: deaths, hung tiles and retry limits for every mode.
#include "detail/supervisor.hpp"

#include <sys/wait.h>

#include <cstring>
#include <fmt/format.h>

#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {

void Supervisor::begin(ControlBlock& control, const PreparedJob& prepared) {
  const std::lock_guard lock(mutex_);
  control_ = &control;
  job_ = &prepared;
  tile_failures_.clear();
  deaths_without_tile_ = 0;
  killed_for_timeout_.clear();
}

bool Supervisor::overdue(std::int64_t since_ns) const noexcept {
  return tile_timeout_.count() > 0 &&
         monotonic_ns() - since_ns > std::chrono::duration_cast<std::chrono::nanoseconds>(tile_timeout_).count();
}

std::string Supervisor::fate(pid_t pid, int wait_status, bool timed_out) const {
  if (timed_out) return fmt::format("pid {}, killed after the tile timeout of {} ms", pid, tile_timeout_.count());
  return fmt::format("pid {}, {}", pid, describe_wait_status(wait_status));
}

void Supervisor::worker_died(int slot, std::int64_t tile, const std::string& fate) {
  control_->requeue_tiles_of(slot);
  int failures = 0;
  {
    const std::lock_guard lock(mutex_);
    failures = tile < 0 ? ++deaths_without_tile_ : ++tile_failures_[tile];
  }
  if (tile < 0 && failures > max_tile_retries_) {
    control_->report_error(fmt::format("{}: workers died {} times before running a tile of the job (last: {})",
                                       job_->kernel->name, failures, fate));
  } else if (tile >= 0 && failures > max_tile_retries_) {
    control_->report_error(fmt::format("{}: tile {} {} killed its worker {} times (last: {})", job_->kernel->name,
                                       job_->first_tile + tile, format_box(job_->grid.box(job_->first_tile + tile)), failures, fate));
  }
}

void Supervisor::check(Launcher& launcher) {
  for (int slot = 0; slot < launcher.worker_count(); ++slot) {
    const WorkerSlot& s = control_->worker(slot);
    const std::int64_t tile = s.current_tile.load(std::memory_order_acquire);
    if (tile >= 0 && !killed_for_timeout_[slot] && overdue(s.claimed_at_ns.load(std::memory_order_relaxed))) {
      launcher.kill(slot);  // hung (looping, or stopped): SIGKILL ends stopped processes too
      killed_for_timeout_[slot] = true;
    }
    const pid_t pid = launcher.pid_of(slot);  // before poll_exit forgets it
    const std::optional<int> status = launcher.poll_exit(slot);
    if (!status) continue;
    const std::string how = fate(pid, *status, std::exchange(killed_for_timeout_[slot], false));
    worker_died(slot, tile, how);
    if (control_->job_failed()) return;
    if (!launcher.replace(slot) && launcher.live_workers() == 0 && !control_->job_complete()) {
      const std::string during = tile >= 0 ? fmt::format(", while running tile {} {}", job_->first_tile + tile, format_box(job_->grid.box(job_->first_tile + tile))) : "";
      control_->report_error(fmt::format("{}: every {}-mode worker died before the job was done (last: {}{})",
                                         job_->kernel->name, mode_name(launcher.mode()), how, during));
      return;
    }
  }
}

void Supervisor::replace_idle_deaths(Launcher& launcher, ControlBlock& control) {
  for (int slot = 0; slot < launcher.worker_count(); ++slot) {
    if (launcher.poll_exit(slot)) {
      control.leave_job(slot);  // no-op unless it died inside the last job
      launcher.replace(slot);
    }
  }
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) return fmt::format("signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("exit status {}", WEXITSTATUS(status));
}

}  // namespace tilepool::detail
