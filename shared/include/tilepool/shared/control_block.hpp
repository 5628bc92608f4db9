#pragma once
/// @file
/// The control block: a job's description and its lock-free tile dispatch state, laid out in
/// memory that the runner and every worker map (a segment in share mode, a MAP_SHARED anonymous
/// mapping in fork mode, plain memory in threads mode).
///
/// Dispatch: an atomic tile cursor hands out chunks of tiles (sized by the job's DispatchPolicy,
/// dispatch.hpp: by default guided, a quarter of what is left per worker, at most 64, shrinking
/// to 1 at the end); each tile's state goes
/// free -> reserved(slot) -> claimed(slot) -> done; a done counter, which each worker adds to
/// once per chunk, tells the runner when the job is complete. So the words every worker writes
/// (cursor, done counter) are touched once per chunk, not once per tile; the rest sits on the
/// worker's own cache line. Nothing on that path makes a system call; idle workers sleep on a
/// futex (`epoch`) and the runner sleeps on another (`finished`).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tilepool/shared/dispatch.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/limits.hpp"
#include "tilepool/shared/segment.hpp"
#include "tilepool/shared/shape.hpp"
#include "tilepool/shared/tiling.hpp"

namespace tilepool {

/// Worker slots of a control block made without saying how many.
inline constexpr int kDefaultWorkerSlots = 64;
inline constexpr std::size_t kNameCapacity = 208;      ///< a segment name (<= 200) and its NUL
inline constexpr std::size_t kBackingCapacity = 512;   ///< "shm" or "file:DIR"
inline constexpr std::size_t kParamsCapacity = 1024;   ///< "key=value\n" lines
inline constexpr std::size_t kMessageCapacity = 1024;  ///< the first error's text
inline constexpr std::size_t kPluginPathCapacity = 4096;  ///< a plugin file's path (PATH_MAX)

/// Tile states in the per-tile table.
inline constexpr std::uint32_t kTileFree = 0;
inline constexpr std::uint32_t kTileDone = 0xFFFFFFFFu;
/// A claimed tile's state: 1 + the claiming worker's slot.
constexpr std::uint32_t tile_claimed_by(int slot) noexcept { return 1u + static_cast<std::uint32_t>(slot); }
/// A reserved tile's state: taken from the cursor in a worker's chunk, not yet started.
constexpr std::uint32_t tile_reserved_by(int slot) noexcept { return 0x40000000u + static_cast<std::uint32_t>(slot); }

/// An array's element type and shape as a JobDescriptor holds it. Plain data; another process
/// may have written it, so the accessors check it.
struct ArrayDescription {
  std::int32_t dtype_code = 0;  ///< a DType's value
  std::int32_t ndim = 0;
  std::int64_t extents[kMaxDims] = {};

  /// The description of a `dtype` array of `shape`; throws Error(usage) past kMaxDims axes.
  static ArrayDescription of(DType dtype, const Shape& shape);
  /// The element type; throws Error(bad_input) if dtype_code is no DType.
  [[nodiscard]] DType dtype() const;
  /// The shape; throws Error(bad_input) if ndim or an extent is out of range.
  [[nodiscard]] Shape shape() const;
};

/// What a job asks of the workers: kernel, segment names, the arrays' dtypes and shapes,
/// iteration grid, parameters. The one description of a job, made once by the runner: the
/// control block holds it (share, fork, threads) and copy mode sends it down each worker's
/// pipe as it is (workers/include/tilepool/workers/copy_protocol.hpp).
/// Plain data; written only while no worker is active (see ControlBlock::post_job). Read the
/// text fields through the accessors: they never read past a field, NUL or not.
struct JobDescriptor {
  std::uint64_t job_id = 0;
  char kernel[64] = {};
  std::uint32_t input_count = 0;
  char inputs[kMaxInputs][kNameCapacity] = {};
  char output[kNameCapacity] = {};
  /// Where each array's segment lives, as Backing::from_spec reads it: "shm",
  /// "file:DIR", or "fd:PID" for a file the runner mapped in place.
  char input_backings[kMaxInputs][kBackingCapacity] = {};
  char output_backing[kBackingCapacity] = {};
  /// Each input's dtype and shape (at and past input_count: zero), and the output's. Share-mode
  /// workers read their segments' headers; copy-mode workers, which have no segments, these.
  ArrayDescription input_arrays[kMaxInputs] = {};
  ArrayDescription output_array = {};
  std::int32_t ndim = 0;  ///< of the iteration space (the grid's shape)
  std::int64_t shape[kMaxDims] = {};
  std::int32_t tile_ndim = 0;  ///< number of tiled (trailing) axes
  std::int64_t tile[kMaxDims] = {};
  std::int64_t tile_count = 0;
  /// 1: each claim records WorkerSlot::claimed_at_ns (the runner enforces a tile timeout);
  /// 0: it does not, and a claim reads no clock.
  std::uint32_t stamp_claims = 0;
  /// 1: workers run each tile on windows holding only the regions the kernel declared
  /// (KernelDef::input_region) and its own box of the output, copied in and out, so a read or
  /// a view outside them fails the tile instead of reading data the kernel did not declare
  /// (copy mode always works this way); 0: on the arrays themselves.
  std::uint32_t check_regions = 0;
  /// The grid tile that claim index 0 runs: workers claim i in [0, tile_count) and run grid
  /// tile first_tile + i (a job over a range of the grid's tiles; 0 for the whole grid).
  std::int64_t first_tile = 0;
  /// How the job's tiles are handed out: claims' chunk sizes, copy mode's tiles in flight.
  DispatchPolicy dispatch;
  char params[kParamsCapacity] = {};
  char plugin[kPluginPathCapacity] = {};  ///< the file of the kernel's plugin; empty for others
  /// The objects the job pinned when it started (Segment::identity), by input and for the
  /// output; all zero for an array that is not a segment or was not pinned. A worker attaches
  /// a name only while it still names that object.
  SegmentIdentity input_identities[kMaxInputs] = {};
  SegmentIdentity output_identity = {};

  /// Input `i`'s pinned identity, or nullopt if it was not pinned.
  [[nodiscard]] std::optional<SegmentIdentity> input_identity(std::size_t i) const noexcept {
    TILEPOOL_CHECK(i < kMaxInputs);
    return pinned(input_identities[i]);
  }
  /// The output's pinned identity, or nullopt.
  [[nodiscard]] std::optional<SegmentIdentity> pinned_output_identity() const noexcept { return pinned(output_identity); }

  /// Copies `text` into a fixed field; throws Error(usage) naming `field` if it does not fit.
  static void set_text(char* dest, std::size_t capacity, std::string_view text, std::string_view field);
  [[nodiscard]] Shape shape_vector() const { return Shape(shape, shape + ndim); }
  [[nodiscard]] Shape tile_vector() const { return Shape(tile, tile + tile_ndim); }
  /// The grid tile that claim index `claimed` (0 <= claimed < tile_count) stands for.
  [[nodiscard]] std::int64_t grid_tile(std::int64_t claimed) const noexcept { return first_tile + claimed; }

  /// The kernel's registered name. Views this descriptor: valid while it is unchanged.
  [[nodiscard]] std::string_view kernel_name() const noexcept { return text_of(kernel); }
  /// Input `i`'s segment name (`i` < kMaxInputs; empty at and past input_count).
  [[nodiscard]] std::string_view input_name(std::size_t i) const noexcept {
    TILEPOOL_CHECK(i < kMaxInputs);
    return text_of(inputs[i]);
  }
  /// The output's segment name (empty when the output is not a segment).
  [[nodiscard]] std::string_view output_name() const noexcept { return text_of(output); }
  /// Where input `i`'s segment lives ("shm", "file:DIR" or "fd:PID").
  [[nodiscard]] std::string_view input_backing_spec(std::size_t i) const noexcept {
    TILEPOOL_CHECK(i < kMaxInputs);
    return text_of(input_backings[i]);
  }
  /// Where the output's segment lives.
  [[nodiscard]] std::string_view output_backing_spec() const noexcept { return text_of(output_backing); }
  /// The job's parameters as "key=value\n" lines.
  [[nodiscard]] std::string_view params_text() const noexcept { return text_of(params); }
  /// The plugin that provides the kernel (workers load it before binding), or empty.
  [[nodiscard]] std::string_view plugin_path() const noexcept { return text_of(plugin); }

 private:
  static std::optional<SegmentIdentity> pinned(const SegmentIdentity& id) noexcept {
    if (id == SegmentIdentity{}) return std::nullopt;
    return id;
  }
  // Up to the first NUL, or the whole field if it has none (another process wrote it).
  template <std::size_t N>
  static std::string_view text_of(const char (&field)[N]) noexcept {
    return {field, ::strnlen(field, N)};
  }
};

/// One worker's slot: who it is and what it is doing, for supervision, and its chunk of tiles.
/// One cache line: each worker writes only its own (the runner writes a dead worker's).
struct alignas(64) WorkerSlot {
  std::atomic<std::int32_t> pid{0};
  /// 1 while the worker is inside a job (enter_job .. leave_job): a worker that dies inside
  /// is let out by requeue_tiles_of, so the next post_job does not wait for it forever.
  std::atomic<std::uint32_t> inside{0};
  std::atomic<std::int64_t> current_tile{-1};  ///< the tile it runs now, or -1
  /// monotonic_ns() when it claimed current_tile (when the job's stamp_claims is set)
  std::atomic<std::int64_t> claimed_at_ns{0};
  std::atomic<std::uint64_t> tiles_done{0};
  /// The worker's chunk: tiles [chunk_next, chunk_end) are reserved for it, not yet started.
  std::atomic<std::int64_t> chunk_next{0};
  std::atomic<std::int64_t> chunk_end{0};
  /// Tiles it completed that the job's done counter does not count yet (added once per chunk).
  std::atomic<std::int64_t> unreported_done{0};
};
static_assert(sizeof(WorkerSlot) == 64);

/// The control block header, followed in memory by the worker slots, the tile state table and
/// the partials, each sized when the block is made.
/// Lives in shared memory: every member is either an atomic or written only while no worker
/// reads it. Safe across threads and processes as documented per member function.
class ControlBlock {
 public:
  static constexpr char kMagic[8] = {'T', 'P', 'C', 'T', 'R', 'L', '1', '\0'};
  static constexpr std::uint32_t kVersion = 5;

  /// Bytes needed for a control block that can run jobs of up to `tile_capacity` tiles on up to
  /// `worker_capacity` workers (slots 0 .. worker_capacity-1).
  static std::size_t bytes_for(std::int64_t tile_capacity, int worker_capacity = kDefaultWorkerSlots) noexcept;
  /// Constructs a fresh control block in `memory` (bytes_for(tile_capacity, worker_capacity)
  /// bytes, 64-aligned).
  static ControlBlock* create_in(void* memory, std::size_t bytes, std::int64_t tile_capacity,
                                 int worker_capacity = kDefaultWorkerSlots);
  /// Checks that `memory` holds a control block of this version and size; throws Error(bad_input).
  static ControlBlock* open_in(void* memory, std::size_t bytes, std::string_view what);

  ControlBlock(const ControlBlock&) = delete;
  ControlBlock& operator=(const ControlBlock&) = delete;

  [[nodiscard]] std::int64_t tile_capacity() const noexcept { return tile_capacity_; }
  [[nodiscard]] int worker_capacity() const noexcept { return worker_capacity_; }
  [[nodiscard]] std::atomic<std::uint32_t>& tile_state(std::int64_t tile) noexcept;
  [[nodiscard]] TilePartial& partial(std::int64_t tile) noexcept;
  /// The partials of tiles [0, count), in tile order.
  [[nodiscard]] std::span<const TilePartial> partials(std::int64_t count) noexcept {
    if (count <= 0) return {};
    return {&partial(0), static_cast<std::size_t>(count)};
  }
  [[nodiscard]] WorkerSlot& worker(int slot) noexcept {
    TILEPOOL_CHECK(slot >= 0 && slot < worker_capacity_);
    return worker_slots()[slot];
  }
  [[nodiscard]] const WorkerSlot& worker(int slot) const noexcept {
    TILEPOOL_CHECK(slot >= 0 && slot < worker_capacity_);
    return const_cast<ControlBlock*>(this)->worker_slots()[slot];
  }

  // --- the runner's side -------------------------------------------------------------------
  /// Writes a job's description without posting it, before any worker exists, so that the
  /// workers' initializer can attach its segments. Runner only.
  void stage_job(const JobDescriptor& desc) noexcept { job_ = desc; }
  /// Publishes `desc` as a new job: waits until no worker is still inside the previous job,
  /// copies `desc` in, calls `while_quiet` (the runner's chance to swap other per-job state),
  /// resets the dispatch state and wakes as many sleeping workers as the job has tiles (each
  /// woken worker claims until none is left; the others see the job when they next wake, within
  /// their idle timeout, and find nothing to do). If `while_quiet` throws, nothing is posted
  /// (the block holds no job) and the exception propagates. Runner only; not concurrent with itself.
  void post_job(const JobDescriptor& desc, const std::function<void()>& while_quiet = {});
  /// Tiles of the current job done so far (counted once per worker chunk: it can lag the tiles
  /// whose state is done by up to kMaxChunk per worker).
  [[nodiscard]] std::int64_t tiles_done() const noexcept { return done_.load(std::memory_order_acquire); }
  /// True when every tile of the current job is done.
  [[nodiscard]] bool job_complete() const noexcept;
  /// True when a worker has reported an error for the current job.
  [[nodiscard]] bool job_failed() const noexcept { return error_state_.load(std::memory_order_acquire) == 2; }
  /// The first error's message (valid when job_failed()).
  [[nodiscard]] std::string error_message() const;
  /// The first error's kind (valid when job_failed()); Errc::job_failed if what a worker wrote
  /// there is no Errc.
  [[nodiscard]] Errc error_code() const noexcept { return errc_from_wire(error_code_).value_or(Errc::job_failed); }
  /// The first error's errno, or 0 (valid when job_failed()).
  [[nodiscard]] int error_errno() const noexcept { return error_errno_; }
  /// The first error as the Error to throw in the runner: its kind, message and errno.
  [[nodiscard]] Error error() const { return Error(error_code(), error_message(), error_errno()); }
  /// Sleeps until the job completes, fails, or `timeout` passes (the runner checks its workers
  /// between waits).
  void wait_for_progress(std::chrono::nanoseconds timeout) const noexcept;
  /// Puts every tile claimed or reserved by `slot` back in the queue, wakes as many workers as
  /// tiles went back, and counts the tiles it completed (its worker died); returns how many it
  /// had started (claimed): those are retries.
  std::int64_t requeue_tiles_of(int slot) noexcept;
  /// Asks every worker to exit and wakes them.
  void request_stop() noexcept;
  /// Nanoseconds (CLOCK_MONOTONIC) of the job's first claim and last completion.
  [[nodiscard]] std::int64_t first_claim_ns() const noexcept { return first_claim_ns_.load(std::memory_order_acquire); }
  [[nodiscard]] std::int64_t last_done_ns() const noexcept { return last_done_ns_.load(std::memory_order_acquire); }
  [[nodiscard]] std::int64_t tiles_requeued_total() const noexcept { return requeued_total_.load(std::memory_order_acquire); }

  // --- a worker's side ----------------------------------------------------------------------
  /// The current epoch: changes whenever there is something new for workers (job, retries, stop).
  [[nodiscard]] std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }
  /// Sleeps while the epoch is `seen` (at most `timeout`).
  void wait_for_epoch_change(std::uint32_t seen, std::chrono::nanoseconds timeout) const noexcept;
  [[nodiscard]] bool stop_requested() const noexcept { return stop_.load(std::memory_order_acquire) != 0; }
  /// Enters the current job: afterwards job() is stable until leave_job(). Returns false if
  /// the runner is posting a new job right now (sleep on the epoch and try again).
  [[nodiscard]] bool enter_job(int slot) noexcept;
  void leave_job(int slot) noexcept;
  /// Waits until no worker is inside the current job (after report_error each leaves once its
  /// tile in flight is done), at most `timeout`; true if none is. Runner only.
  [[nodiscard]] bool wait_until_idle(std::chrono::milliseconds timeout) noexcept;
  /// The current job (between enter_job and leave_job).
  [[nodiscard]] const JobDescriptor& job() const noexcept { return job_; }
  /// Claims the next free tile for `slot`; -1 when none is left (or the job failed).
  [[nodiscard]] std::int64_t claim_next_tile(int slot) noexcept;
  /// Marks `tile` done; the worker that completes the job wakes the runner.
  void complete_tile(int slot, std::int64_t tile) noexcept;
  /// Adds `slot`'s completed tiles to the job's done counter now (claim_next_tile does it once
  /// per chunk and when nothing is left).
  void report_done(int slot) noexcept;
  /// Records the job's first error (later ones are dropped) and wakes the runner. `code` is
  /// the error's kind (an Errc) and `sys_errno` the errno behind it (or 0), kept across the
  /// process boundary so the runner rethrows the same kind (a worker's full store is
  /// Errc::no_space, not a failed job).
  void report_error(std::string_view message, Errc code = Errc::job_failed, int sys_errno = 0) noexcept;
  /// Records `error`'s message, kind and errno (report_error).
  void report_error(const Error& error) noexcept { report_error(error.what(), error.code(), error.sys_errno()); }

 private:
  ControlBlock() = default;
  WorkerSlot* worker_slots() noexcept;

  char magic_[8] = {};
  std::uint32_t version_ = 0;
  std::int64_t tile_capacity_ = 0;
  std::int32_t worker_capacity_ = 0;
  std::size_t total_bytes_ = 0;

  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint32_t> stop_{0};
  std::atomic<std::uint32_t> posting_{0};
  std::atomic<std::uint32_t> idle_waiters_{0};  // runners in wait_until_idle: leave_job wakes them
  std::atomic<std::uint32_t> active_{0};
  alignas(64) std::atomic<std::uint32_t> finished_{0};
  std::atomic<std::uint32_t> error_state_{0};  // 0 none, 1 being written, 2 written
  alignas(64) std::atomic<std::int64_t> cursor_{0};
  alignas(64) std::atomic<std::int64_t> done_{0};
  alignas(64) std::atomic<std::int64_t> requeued_{0};
  std::atomic<std::int64_t> requeued_total_{0};
  std::atomic<std::int64_t> first_claim_ns_{0};
  std::atomic<std::int64_t> last_done_ns_{0};
  std::int32_t error_code_ = 0;   // an Errc, written before error_state_ becomes 2
  std::int32_t error_errno_ = 0;  // its errno, or 0, likewise
  char error_[kMessageCapacity] = {};
  JobDescriptor job_;
};

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on one machine.
std::int64_t monotonic_ns() noexcept;

}  // namespace tilepool
