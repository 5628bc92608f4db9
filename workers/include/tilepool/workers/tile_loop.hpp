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
#include "tilepool/workers/worker.hpp"

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

/// Runs kernels in this process on the arrays `find_arrays` gives for each job: its segments
/// attached by name (share mode), or arrays this process already holds (fork and threads).
/// A job with JobDescriptor::check_regions runs each tile on local windows of its declared
/// regions instead (copied in, and the output box copied back).
class LocalJobHandler final : public JobHandler {
 public:
  using FindArrays = std::function<JobArrays(const JobDescriptor&)>;
  using TileObserver = tilepool::TileObserver;

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
