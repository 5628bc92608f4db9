// The launchers, one row per mode: its name, how it starts workers and where it keeps a job's
// arrays. A new mode is one launcher file (src/launchers/NEW.cpp, built by the folder's glob),
// its factory's declaration and row here, and its Mode enumerator (pool.hpp); mode names, the
// command line's help and Python's tilepool.MODES are read from this table.
#include "detail/launcher.hpp"

#include <array>

namespace tilepool::detail {

// Each defined in its launcher's file.
std::unique_ptr<Launcher> make_share_launcher(const PoolOptions& options, const StagedJob* first_job);
std::unique_ptr<Launcher> make_fork_launcher(const PoolOptions& options);
std::unique_ptr<Launcher> make_copy_launcher(const PoolOptions& options, Supervisor& supervisor, const StagedJob* first_job);
std::unique_ptr<Launcher> make_thread_launcher(const PoolOptions& options, bool first_job_given);

namespace {

const std::array<LauncherRow, 4> kLaunchers{{
    {Mode::share, "share", ArraysIn::segments, Sharing::private_to_process, /*stops_stuck_workers=*/true,
     [](const PoolOptions& o, const StagedJob* first, Supervisor&) { return make_share_launcher(o, first); }},
    // Inputs stay in the runner's private memory (children read them copy-on-write); the
    // output is MAP_SHARED memory the children write.
    {Mode::fork, "fork", ArraysIn::memory, Sharing::shared_with_children, /*stops_stuck_workers=*/true,
     [](const PoolOptions& o, const StagedJob*, Supervisor&) { return make_fork_launcher(o); }},
    {Mode::copy, "copy", ArraysIn::memory, Sharing::private_to_process, /*stops_stuck_workers=*/true,
     [](const PoolOptions& o, const StagedJob* first, Supervisor& s) { return make_copy_launcher(o, s, first); }},
    {Mode::threads, "threads", ArraysIn::memory, Sharing::private_to_process, /*stops_stuck_workers=*/false,
     [](const PoolOptions& o, const StagedJob* first_job, Supervisor&) { return make_thread_launcher(o, first_job != nullptr); }},
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
