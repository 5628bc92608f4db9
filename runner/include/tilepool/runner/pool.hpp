#pragma once
/// @file
/// The pool: runs tile jobs on workers in one of four modes, reusable across jobs
/// (load inputs once, run many jobs).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/shared/array_segment.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// How workers get at the data.
enum class Mode {
  share,    ///< worker processes attach named segments (the default)
  fork,     ///< workers forked after loading: inputs copy-on-write, output MAP_SHARED
  copy,     ///< tiles' bytes cross each worker's pipe both ways (what pool.map over slices does)
  threads,  ///< std::threads in one process: the baseline
};
std::string_view mode_name(Mode mode) noexcept;
/// Parses "share", "fork", "copy" or "threads"; throws Error(usage).
Mode parse_mode(std::string_view text);

/// One array a job reads or writes: its memory in this process, and the segment name that
/// worker processes attach in share mode ("" for private memory).
struct JobArray {
  AnyArray array;
  std::string segment;
  /// The array of a segment, by name.
  static JobArray of(const ArraySegment& s) { return JobArray{s.array(), s.name()}; }
};

/// A job: a kernel over inputs into an output, cut into tiles.
struct JobRequest {
  std::string kernel;
  std::vector<JobArray> inputs;
  JobArray output;
  Shape tile;  ///< extents for the last k axes of the iteration space
  Params params;
  /// Called from the runner's wait loop (about every 20 ms) with tiles done and total.
  std::function<void(std::int64_t done, std::int64_t total)> progress;
};

/// What a job took. Times in seconds.
struct JobStats {
  std::int64_t tiles = 0;
  double compute_s = 0;      ///< first tile handed out to last tile done
  std::int64_t retries = 0;  ///< tiles run again after their worker died
  std::uint64_t bytes_copied = 0;
  std::uint64_t peak_pss_bytes = 0;  ///< parent + workers, sampled during the job
};

/// Pool settings.
struct PoolOptions {
  int workers = 0;  ///< 0: one per core
  Mode mode = Mode::share;
  Backing backing;  ///< where share mode's control block lives
  /// The tilepool-worker executable; empty: $TILEPOOL_WORKER, else beside this executable.
  std::filesystem::path worker_executable;
  std::int64_t tile_capacity = 1 << 17;  ///< the most tiles a job may have
  int max_tile_retries = 3;              ///< a tile whose worker died more often fails the job
  /// Sample the PSS of the runner and its workers during each job (JobStats::peak_pss_bytes).
  /// Reading /proc/PID/smaps_rollup costs ~0.1 ms per process per sample: turn it off when
  /// timing many short jobs on a warm pool.
  bool sample_memory = true;
  /// A worker that holds one tile longer than this is killed and the tile retried (0: never).
  std::chrono::milliseconds tile_timeout{0};
};

namespace detail {
class Executor;
}

/// A pool of workers. Start once, run many jobs. Move-only; ~Pool stops and reaps every worker
/// and never throws. Not thread-safe: run jobs from one thread.
class Pool {
 public:
  /// Starts the workers. In share mode it spawns tilepool-worker processes; if `first_job` is
  /// given, their initializer attaches its segments before saying ready. Throws Error.
  static Pool start(const PoolOptions& options, const JobRequest* first_job = nullptr);

  Pool(Pool&&) noexcept;
  Pool& operator=(Pool&&) noexcept;
  ~Pool();

  /// Runs one job to completion; throws Error(job_failed) naming the kernel and tile if a
  /// kernel fails, Error(bad_input/usage) if the job does not fit the kernel.
  JobStats run(const JobRequest& job);

  [[nodiscard]] Mode mode() const noexcept;
  [[nodiscard]] int worker_count() const noexcept;
  /// Seconds from the first spawn to the last "ready" (0 for threads mode).
  [[nodiscard]] double spawn_seconds() const noexcept;
  /// The pids of the worker processes (empty for threads mode).
  [[nodiscard]] std::vector<pid_t> worker_pids() const;

 private:
  explicit Pool(std::unique_ptr<detail::Executor> impl);
  std::unique_ptr<detail::Executor> impl_;
};

/// The output dtype and shape of `kernel` over `inputs` (validated); for making the output.
ArraySpec output_spec(const JobRequest& job);

/// Runs `job` in this thread, tile after tile: the reference that tests compare against.
void run_inline(const JobRequest& job);

/// A zero-filled array in anonymous shared memory (MAP_SHARED | MAP_ANONYMOUS), pre-faulted:
/// the output of a fork-mode job, which forked workers write and the parent reads. The AnyArray
/// owns the mapping (copies share it); it has no name, so nothing is left in /dev/shm. Only this
/// process and children forked while it is alive see it. Throws Error(usage) if the byte size
/// overflows, Error(system) if mmap fails.
AnyArray make_shared_array(DType dtype, const Shape& shape);

/// Makes SIGINT and SIGTERM stop the running job: Pool::run then throws Error(interrupted),
/// the pool's destructor stops its workers and RAII handles remove the job's segments.
void install_interrupt_handlers();
/// The signal that asked us to stop, or 0.
int interrupt_signal() noexcept;

}  // namespace tilepool
