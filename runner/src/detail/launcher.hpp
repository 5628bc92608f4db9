#pragma once
// Private to runner/: a mode is a launcher. The job runner (job_runner.hpp) owns a job's life;
// a launcher says how this mode's workers start, reach the arrays and die with their parent.
// A new mode is one more Launcher and its row in launchers/table.cpp (docs/architecture.md).

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/control_block.hpp"

namespace tilepool::detail {

class Supervisor;

/// How long a stopping pool lets its workers exit on their own before it SIGKILLs them.
inline constexpr std::chrono::milliseconds kStopGrace{2000};
/// How long an abandoned job's workers may take to finish the tiles they hold before the
/// launcher stops them (end_job(abandoned)).
inline constexpr std::chrono::milliseconds kAbandonGrace{250};

/// The dtype and shape of each input of `job`.
std::vector<ArraySpec> input_specs(const JobRequest& job);

/// A job checked against its kernel: the output it needs and the tile grid it runs over.
struct PreparedJob {
  const KernelDef* kernel = nullptr;
  ArraySpec output;
  TileGrid grid;
  std::int64_t first_tile = 0;  ///< the job's range of grid tiles: [first_tile, first_tile + tile_count)
  std::int64_t tile_count = 0;
};

/// A job a pool is started for, prepared once (run_job, Pool::start): a share-mode pool's
/// initializer attaches its arrays before the workers say ready, and no launcher makes more
/// workers than it has tiles.
struct StagedJob {
  const JobRequest& request;
  const PreparedJob& prepared;
};

/// One mode's way of running workers. Called from the job runner's thread only, except where
/// a member says otherwise.
class Launcher {
 public:
  virtual ~Launcher() = default;
  [[nodiscard]] virtual Mode mode() const noexcept = 0;
  [[nodiscard]] virtual int worker_count() const noexcept = 0;
  /// The control block the next job is posted to, with room for `tiles` tiles: a launcher
  /// whose block is too small makes a bigger one (and moves its workers onto it).
  virtual ControlBlock& control_for(std::int64_t tiles) = 0;
  /// Refuses (Error(usage)) a job this mode cannot run as given.
  virtual void check(const JobRequest& /*job*/, const PreparedJob& /*prepared*/) const {}
  /// Hands the job's arrays to the workers' side; runs inside post_job's quiet window, while no
  /// worker reads the job.
  virtual void bind(const JobRequest& /*job*/, const PreparedJob& /*prepared*/) {}
  /// Called once the job is posted: a mode that starts workers per job starts them now.
  virtual void start_job() {}
  /// The job is over: completed, or (`abandoned`) failed or interrupted. After it returns no
  /// worker touches the job's arrays. Never throws.
  virtual void end_job(bool /*abandoned*/) noexcept {}

  // --- workers the job runner supervises through the control block's slots ----------------
  /// True if the runner watches this mode's workers slot by slot (share, fork); false if they
  /// cannot die (threads) or the mode watches them itself (copy's transport).
  [[nodiscard]] virtual bool runner_supervises() const noexcept { return false; }
  /// The wait status of the worker in `slot` if it exited since the last call (it is reaped).
  virtual std::optional<int> poll_exit(int /*slot*/) { return std::nullopt; }
  [[nodiscard]] virtual pid_t pid_of(int /*slot*/) const { return 0; }
  /// SIGKILLs the worker in `slot` (a hung tile); its exit shows in poll_exit.
  virtual void kill(int /*slot*/) noexcept {}
  /// Starts a new worker in a dead worker's slot; false if this mode does not replace workers.
  virtual bool replace(int /*slot*/) { return false; }
  /// Workers alive now.
  [[nodiscard]] virtual int live_workers() const { return worker_count(); }

  /// The pids of the worker processes. Safe to call from any thread.
  [[nodiscard]] virtual std::vector<pid_t> worker_pids() const { return {}; }
  [[nodiscard]] virtual double spawn_seconds() const noexcept { return 0; }
  /// Array bytes that crossed a pipe in the last job.
  [[nodiscard]] virtual std::uint64_t bytes_copied() const noexcept { return 0; }
};

/// The pids that the first `workers` slots of `control` hold (workers that started), for
/// launchers whose workers record themselves there. Safe from any thread.
std::vector<pid_t> pids_in(const ControlBlock& control, int workers);

/// Where a mode keeps a job's arrays (ArrayPlacement asks the mode's row).
enum class ArraysIn {
  segments,  ///< job-owned named segments that worker processes attach by name
  memory,    ///< unnamed memory of the runner (Sharing says with whom)
};

/// One mode in the launcher table: its name, where it keeps arrays, how it starts.
struct LauncherRow {
  Mode mode;
  std::string_view name;
  ArraysIn arrays;
  Sharing output_sharing;  ///< for ArraysIn::memory: how an output is shared with workers
  /// Whether a worker that holds a tile too long can be stopped (killed and replaced): what a
  /// tile timeout needs (check_tile_timeout). Threads cannot be.
  bool stops_stuck_workers;
  std::unique_ptr<Launcher> (*make)(const PoolOptions& options, const StagedJob* first_job, Supervisor& supervisor);
};
/// Every mode's row, in the order `tilepool demo` runs them.
std::span<const LauncherRow> launcher_table() noexcept;
/// The row of `mode`.
const LauncherRow& launcher_row(Mode mode) noexcept;

/// The kernel's iteration space cut by `tile`; throws Error(usage) if the tile has more axes.
TileGrid tile_grid_of(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output, const Shape& tile);
/// `space` (the kernel's iteration_shape) cut by `tile`: the half of tile_grid_of that is
/// about the tile alone (its errors are the tile's; iteration_shape's are the kernel's).
TileGrid tile_grid_over(const KernelDef& kernel, const Shape& space, const Shape& tile);
/// Validates a job (kernel, arity, dtypes, shapes, output, tile) without running it.
PreparedJob prepare(const JobRequest& job);
/// A job whose kernel, output spec and grid are already known (run_job's plan): checks only
/// that its output array is that spec and its tile range is inside the grid.
PreparedJob prepare_planned(const JobRequest& job, const KernelDef& kernel, const ArraySpec& output, TileGrid grid);
/// The job's description for a control block.
JobDescriptor describe(const JobRequest& job, const PreparedJob& prepared, std::uint64_t job_id);

}  // namespace tilepool::detail
