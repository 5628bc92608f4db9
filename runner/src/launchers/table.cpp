// The launchers, one row per mode: its name, how it starts workers and where it keeps a job's
// arrays. A new mode is one launcher file and one row here (and its Mode enumerator).
#include "detail/launcher.hpp"

#include <array>

namespace tilepool::detail {
namespace {

const std::array<LauncherRow, 4> kLaunchers{{
    {Mode::share, "share", ArraysIn::segments, Sharing::private_to_process,
     [](const PoolOptions& o, const JobRequest* first, Supervisor&) { return make_share_launcher(o, first); }},
    // Inputs stay in the runner's private memory (children read them copy-on-write); the
    // output is MAP_SHARED memory the children write.
    {Mode::fork, "fork", ArraysIn::memory, Sharing::shared_with_children,
     [](const PoolOptions& o, const JobRequest*, Supervisor&) { return make_fork_launcher(o); }},
    {Mode::copy, "copy", ArraysIn::memory, Sharing::private_to_process,
     [](const PoolOptions& o, const JobRequest* first, Supervisor& s) { return make_copy_launcher(o, s, first); }},
    {Mode::threads, "threads", ArraysIn::memory, Sharing::private_to_process,
     [](const PoolOptions& o, const JobRequest* first_job, Supervisor&) { return make_thread_launcher(o, first_job != nullptr); }},
}};

}  // namespace

std::span<const LauncherRow> launcher_table() noexcept { return kLaunchers; }

const LauncherRow& launcher_row(Mode mode) noexcept {
  for (const LauncherRow& row : kLaunchers) {
    if (row.mode == mode) return row;
  }
  TILEPOOL_CHECK(!"every Mode has a row in the launcher table");
  return kLaunchers.front();
}

}  // namespace tilepool::detail
