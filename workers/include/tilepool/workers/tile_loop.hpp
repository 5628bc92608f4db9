#pragma once
/// @file
/// The worker's side of dispatch, one loop for every mode: serve_jobs sleeps on the control
/// block, enters each posted job and hands it to a JobHandler, the hook that differs between
/// modes. LocalJobHandler runs kernels in this process (share-mode workers, fork-mode children,
/// threads); copy mode's transport is another handler that moves each tile's bytes through a
/// worker process's pipes (runner/src/launchers/copy.cpp, over workers/src/copy_transport.cpp).

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// What one worker does with the jobs serve_jobs hands it. One per worker; not thread-safe.
class JobHandler {
 public:
  virtual ~JobHandler() = default;
  /// Gets ready for `job` (called each time the worker enters it, before run): attach or find
  /// its arrays and bind its kernel, or tell a worker process about it. Throws Error: the job
  /// fails with it.
  virtual void bind(const JobDescriptor& job) = 0;
  /// Claims tiles of the bound job for `slot` (ControlBlock::claim_next_tile) and completes
  /// them until none is left or the job failed. Throws Error: the job fails with it.
  virtual void run(ControlBlock& control, int slot) = 0;
  /// Drops what bind made (the bound kernel), once run has returned: inside the job, so what a
  /// kernel's destructor does is part of it. The next run of the same job binds again. Throws
  /// Error: the job fails with it.
  virtual void release() {}
  /// Called between idle waits; false ends serve_jobs (the parent is gone, say).
  virtual bool still_wanted() { return true; }
};

/// The loop every worker runs until the control block asks it to stop: sleep on the epoch,
/// enter each new job (or the same job again after tiles were requeued), bind it, run it,
/// release it, leave. Errors from the handler become the job's error, naming the worker.
void serve_jobs(ControlBlock& control, int slot, JobHandler& handler);

/// What ends a kernel thread that called pthread_exit() (its unwinding cannot be caught and
/// dropped: libgcc aborts with "FATAL: exception not rethrown"). serve_jobs reports the job's
/// error naming the kernel first, then calls it with how the kernel ended ("called
/// pthread_exit() on tile 3 [0:4, 0:4]"). Unset (a worker process): the process ends with
/// status 1. Threads mode sets one for its threads: they are the runner's.
using ThreadEndHandler = void (*)(const std::string& how);
/// Sets the calling thread's ThreadEndHandler.
void set_thread_end_handler(ThreadEndHandler handler) noexcept;
/// Sets the ThreadEndHandler of threads that have none of their own (the front end's: the CLI's
/// says so in one line and removes its job segments).
void set_process_thread_end_handler(ThreadEndHandler handler) noexcept;
/// Reports `how` as the job's error, then ends the thread's process as its ThreadEndHandler
/// says. For a catch of abi::__forced_unwind around kernel code that runs in a job.
[[noreturn]] void end_on_thread_exit(ControlBlock& control, const std::string& how);
/// The same outside a job (a kernel's output_spec, iteration_shape or input_region, called on
/// the front end's thread): the thread's handler, else the process's, else one line
/// "tilepool: error: HOW" on stderr and exit status 1.
[[noreturn]] void end_on_thread_exit(const std::string& how);

/// A job's arrays as one process sees them.
struct JobArrays {
  std::vector<AnyArray> inputs;
  AnyArray output;
};

/// Where a tile is on its way through LocalJobHandler, for fault-injection tests.
enum class TilePoint {
  claimed,  ///< after claiming the tile, before computing it
  written,  ///< after writing the tile's output, before marking it done
};

/// Runs kernels in this process on the arrays `find_arrays` gives for each job: its segments
/// attached by name (share mode), or arrays this process already holds (fork and threads).
/// A job with JobDescriptor::check_regions runs each tile on local windows of its declared
/// regions instead (copied in, and the output box copied back).
class LocalJobHandler final : public JobHandler {
 public:
  using FindArrays = std::function<JobArrays(const JobDescriptor&)>;
  /// Called at each TilePoint of each tile (tracing; the fault tests kill the worker there);
  /// may be empty.
  using TileObserver = std::function<void(TilePoint, std::int64_t tile)>;

  explicit LocalJobHandler(FindArrays find_arrays, TileObserver observer = {}, std::function<bool()> still_wanted = {});
  ~LocalJobHandler() override;
  void bind(const JobDescriptor& job) override;
  void run(ControlBlock& control, int slot) override;
  void release() override;
  bool still_wanted() override { return !still_wanted_ || still_wanted_(); }

 private:
  FindArrays find_arrays_;
  TileObserver observer_;
  std::function<bool()> still_wanted_;
  const KernelDef* kernel_ = nullptr;
  std::unique_ptr<BoundKernel> bound_;
  struct CheckedTiles;                     // the job's arrays and windows, when it checks regions
  std::unique_ptr<CheckedTiles> checked_;  // null when it does not
  TileGrid grid_;
  std::int64_t first_tile_ = 0;  // claim index i runs grid tile first_tile_ + i
};

/// Where the tile observers of this process's workers come from. The workers a program starts
/// — a share-mode worker (serve_as_worker_if_asked), a copy-mode worker, a fork-mode child —
/// each call make_tile_observer() once as they start and observe every tile with what it
/// returns. Unset (the default) they observe nothing: production programs set nothing. A
/// program sets it before it starts workers (the fault tests' own CLI and worker executables
/// do, from tests/fault_injection/); not thread-safe against a worker starting meanwhile.
using TileObserverFactory = std::function<LocalJobHandler::TileObserver()>;
void set_tile_observer_factory(TileObserverFactory factory);
/// The observer for a worker starting now: the factory's, or empty. Throws what the factory throws.
LocalJobHandler::TileObserver make_tile_observer();

/// The segments a worker has attached, by path: each is attached once and reused by later
/// jobs while it is still the object the job pinned (or, unpinned, the object the name holds).
/// Nothing is pre-faulted: a worker maps the pages of the tiles it runs, when it runs them, so
/// attaching costs the same at 1 KiB and at 1 GiB. Not thread-safe; one per worker.
class SegmentCache {
 public:
  /// The attached segment `name`, mapped read-only or read-write. With `expected`, the mapping
  /// is of that object or the call fails (Error(bad_input) "segment 'x' was replaced or resized
  /// since the job started: ..."), never of another object that took the name; without it, the
  /// object the name holds now. Throws Error(bad_input) as ArraySegment::attach.
  const ArraySegment& get(const std::string& name, const Backing& backing, bool read_only = false,
                          std::optional<SegmentIdentity> expected = std::nullopt);
  /// The arrays of `job`, attached through this cache (inputs read-only, each pinned to the
  /// identity the job descriptor gives); drops segments the job does not name.
  JobArrays arrays_of(const JobDescriptor& job);
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    ArraySegment segment;
    bool read_only;
  };
  std::map<std::string, Entry, std::less<>> entries_;
};

/// "[0:365, 0:4, 4:8]": a box for messages.
std::string format_box(const Box& box);

}  // namespace tilepool
