#pragma once
/// @file
/// The pool: runs tile jobs on workers in one of four modes, reusable across jobs
/// (load inputs once, run many jobs).

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/dispatch.hpp"
#include "tilepool/shared/interrupt.hpp"
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
/// Every mode's name, in the order `tilepool demo` runs them: share, fork, copy, threads.
std::vector<std::string_view> mode_names();
/// Parses "share", "fork", "copy" or "threads"; throws Error(usage).
Mode parse_mode(std::string_view text);

/// One array a job reads or writes: its memory in this process, and the segment name that
/// worker processes attach in share mode ("" for unnamed memory). Copies share the memory; an
/// array that ArrayPlacement made is freed (its segment removed) when the last copy goes.
struct JobArray {
  AnyArray array;
  std::string segment;
  /// Where `segment` lives: shm, file:DIR, or the descriptors of this process (fd:PID) for a
  /// file mapped in place (an input .npy, an output being made).
  Backing backing;
  /// The object `segment` named when the array was made (pinned): share-mode workers attach the
  /// name only while it still names this object, so a job never reads or writes another array
  /// that took the name. nullopt: not pinned (workers attach whatever the name holds).
  std::optional<SegmentIdentity> identity;
  /// The array of a segment, by name, pinned to the object `s` mapped; `s` must outlive the job.
  static JobArray of(const ArraySegment& s) {
    return JobArray{s.array(), s.name(), s.segment().backing(), s.segment().identity()};
  }
};

/// What a job does with an array.
enum class ArrayRole {
  input,   ///< workers read it
  output,  ///< workers write it
};

/// Where a mode keeps a job's arrays: the one way to make them. share: a job-owned segment
/// ("tilepool-<pid>-...", removed with the array) that workers attach by name; fork: inputs in
/// this process's private memory (children read them copy-on-write), outputs in MAP_SHARED
/// memory the children write; copy and threads: private memory. Cheap to copy.
class ArrayPlacement {
 public:
  ArrayPlacement(Mode mode, Backing backing) : mode_(mode), backing_(std::move(backing)) {}
  /// A zero-filled array of `dtype` and `shape` for `role`. Throws Error(no_space) if the store
  /// or memory is too small, Error(usage) if the byte size overflows.
  [[nodiscard]] JobArray make(DType dtype, const Shape& shape, ArrayRole role) const;
  /// As make(), for a process that will fill or write only `data_ranges` (byte ranges of the
  /// data) of the array: share mode makes a sparse segment with only those ranges reserved
  /// (ArraySegment::create_sparse); the other modes' memory takes pages only when touched.
  [[nodiscard]] JobArray make_sparse(DType dtype, const Shape& shape, ArrayRole role, std::span<const ByteRange> data_ranges) const;
  /// An NPY file's array. An input that needs no conversion is mapped in place, read-only, in
  /// every mode (ArraySegment::map_npy_file: nothing copied); otherwise it is placed as make()
  /// places it and filled by one read() of the file's data. Throws Error(bad_input) for a bad
  /// file, and leaves nothing behind.
  [[nodiscard]] JobArray load_npy(const std::filesystem::path& path, ArrayRole role = ArrayRole::input) const;
  [[nodiscard]] Mode mode() const noexcept { return mode_; }
  [[nodiscard]] const Backing& backing() const noexcept { return backing_; }

 private:
  Mode mode_;
  Backing backing_;
};

/// A job: a kernel over inputs into an output, cut into tiles.
struct JobRequest {
  std::string kernel;
  std::vector<JobArray> inputs;
  JobArray output;
  Shape tile;  ///< extents for the last k axes of the iteration space
  Params params;
  /// The tiles to run (default: all). Only those tiles' output elements are written; the rest
  /// of the output is left as it was. A reduction's output gets the total of the range's
  /// partials. Error(usage) if the range is not inside the grid.
  TileRange tiles;
  /// Called from the runner's wait loop (about every 20 ms) with tiles done and total.
  std::function<void(std::int64_t done, std::int64_t total)> progress;
  /// Set from any thread to stop the job: Pool::run throws Error(interrupted). Null: only
  /// signals stop it (install_interrupt_handlers).
  const std::atomic<bool>* cancel = nullptr;
  /// Run each tile on windows holding only the input regions its kernel declared and its own
  /// output box (as copy mode always does), so a kernel that reads or views outside them fails
  /// the job naming the region instead of reading undeclared data. Costs a copy of each tile's
  /// regions; for testing kernels.
  bool check_regions = false;
};

/// What a job took. Times in seconds.
struct JobStats {
  std::int64_t tiles = 0;
  double compute_s = 0;      ///< first tile handed out to last tile done
  std::int64_t retries = 0;  ///< tiles run again after their worker died
  std::uint64_t bytes_copied = 0;
  /// Parent + workers, when the job's last tile is done (PoolOptions::sample_memory).
  std::uint64_t peak_pss_bytes = 0;
  /// A reduction's per-tile partials, in tile order, one per tile of the job's range (empty for
  /// maps): what sum_in_tile_order combined into the output.
  std::vector<TilePartial> partials;
};

/// Pool settings.
struct PoolOptions {
  int workers = 0;  ///< 0: one per core
  Mode mode = Mode::share;
  Backing backing;  ///< where share mode's control block lives
  /// The program share and copy modes start as workers (with serve_as_worker_if_asked's
  /// arguments); empty: $TILEPOOL_WORKER, else the tilepool-worker installed with this
  /// libtilepool_runner (its directory's ../bin/, then ../libexec/), wherever the program is. A
  /// program that carries its own kernels names itself ("/proc/self/exe").
  std::filesystem::path worker_executable;
  /// Tiles the control block has room for at first; a bigger job grows it (share mode restarts
  /// its workers on the new block), so this is a starting size, not a limit.
  std::int64_t tile_capacity = 1 << 12;
  int max_tile_retries = 3;              ///< a tile whose worker died more often fails the job
  /// Sample the PSS of the runner and its workers once per job, after its last tile is done
  /// (JobStats::peak_pss_bytes): every page the job touched is mapped then. Reading
  /// /proc/PID/smaps_rollup walks every mapped page (about 20 ms per process at 3 x 128 MiB):
  /// turn it off when the figure is not wanted.
  bool sample_memory = true;
  /// A worker that holds one tile longer than this is killed and the tile retried (0: never).
  std::chrono::milliseconds tile_timeout{0};
  /// How the pool's jobs hand out their tiles (chunk sizes, copy mode's tiles in flight).
  DispatchPolicy dispatch;
};

class Pool;
namespace detail {
class JobRunner;
struct PreparedJob;
struct StagedJob;
JobStats run_prepared(Pool& pool, const JobRequest& job, const PreparedJob& prepared);
Pool start_pool(const PoolOptions& options, const StagedJob* first_job);
}  // namespace detail

/// A pool of workers. Start once, run many jobs. Move-only; ~Pool stops and reaps every worker
/// and never throws. Not thread-safe: run jobs from one thread.
///
/// One job runner (runner/src/job_runner.cpp) owns a job's life: validate, post, supervise,
/// sample memory, collect stats. A mode is a launcher (runner/src/launchers/): how workers start
/// and die with their parent, and where arrays live.
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
  /// The pids of the worker processes (empty for threads mode). Safe to call from another
  /// thread while run() runs.
  [[nodiscard]] std::vector<pid_t> worker_pids() const;
  /// Where this pool's mode keeps arrays: make a job's arrays with it.
  [[nodiscard]] ArrayPlacement placement() const;

 private:
  friend JobStats detail::run_prepared(Pool& pool, const JobRequest& job, const detail::PreparedJob& prepared);
  friend Pool detail::start_pool(const PoolOptions& options, const detail::StagedJob* first_job);
  explicit Pool(std::unique_ptr<detail::JobRunner> impl);
  std::unique_ptr<detail::JobRunner> impl_;
};

/// The output dtype and shape of `kernel` over `inputs` (validated); for making the output.
ArraySpec output_spec(const JobRequest& job);

/// The grid of tiles `job` runs over: its kernel's iteration space cut by `job.tile`. Throws
/// Error(usage) if the tile does not fit that space, Error as output_spec for bad inputs.
TileGrid tile_grid(const JobRequest& job);
/// The grid of tiles of `kernel` over arrays of these specs (before any memory exists), cut by
/// `tile`; throws as tile_grid.
TileGrid tile_grid(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output, const Shape& tile);

/// Runs `job` in this thread, tile after tile: the reference that tests compare against.
void run_inline(const JobRequest& job);

// install_interrupt_handlers, interrupt_signal and throw_if_interrupted: shared/interrupt.hpp.

/// The most seconds a tile timeout may be (--tile-timeout, tile_timeout=): far beyond any tile,
/// and small enough that the timeout in milliseconds fits the clock's integer.
inline constexpr double kMaxTileTimeoutSeconds = 1e9;

/// How a line that ends this process starts (a kernel that called exit() in a threads-mode job
/// ends the runner with one line): "tilepool: error: " unless a front end says otherwise
/// (tilepool-mpi names its rank and node). Set it before any job runs.
void set_last_words_prefix(std::string prefix);

/// Makes sure this process may have `needed` file descriptors open: raises the soft
/// RLIMIT_NOFILE up to the hard limit if it must, else throws Error(usage) "<what> need N file
/// descriptors; this process may open M (ulimit -n; hard limit H): raise the limit<remedy>".
/// Pools call it before they start workers (two descriptors each); a front end before it opens
/// a job's files.
void raise_descriptor_limit(std::uint64_t needed, std::string_view what, std::string_view remedy = "");

}  // namespace tilepool
