#pragma once
/// @file
/// The worker's side of dispatch: bind a job (attach its segments once, build the kernel's
/// views) and run the tile loop: claim a tile, run the kernel on it, mark it done.
/// Worker processes (share mode), forked children (fork mode) and threads (threads mode) all
/// run this same loop against a ControlBlock.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// The segments a worker has attached, by name: each is attached once and reused by later
/// jobs while it is still the same object (same inode). Not thread-safe; one per worker.
class SegmentCache {
 public:
  /// The attached segment `name`; attaches (pre-faulting it) on first use or if the name now
  /// refers to a new object. Throws Error(bad_input) as ArraySegment::attach.
  const ArraySegment& get(const std::string& name, const Backing& backing);
  /// Drops every segment not named in `keep`.
  void retain_only(const JobDescriptor& keep);
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    ArraySegment segment;
    unsigned long inode;
  };
  std::map<std::string, Entry> entries_;
};

/// A job bound in one process: the kernel with its typed views and the tile grid.
struct BoundJob {
  std::uint64_t job_id = 0;
  const KernelDef* kernel = nullptr;
  std::unique_ptr<BoundKernel> bound;
  TileGrid grid;
};

/// Binds `job` to arrays already mapped in this process (fork and threads modes).
BoundJob bind_job(const JobDescriptor& job, std::span<const AnyArray> inputs, const AnyArray& output);
/// Binds `job` to its segments, attaching them through `cache` (share mode).
BoundJob bind_job(const JobDescriptor& job, SegmentCache& cache);

/// Claims and runs tiles of the current job until none is left or the job failed. A kernel
/// error is reported to the control block with the kernel, tile, box and pid. Thread-safe:
/// many workers (threads or processes) run it at once on one control block, each with its own
/// slot and BoundJob.
void run_tiles(ControlBlock& control, int slot, BoundJob& job);

/// The loop every worker runs until the control block asks it to stop: sleep on the epoch,
/// enter each new job, bind it with `bind` (once per job id), run its tiles, leave.
/// `on_idle` runs after each idle wait; returning false ends the loop (e.g. parent gone).
/// A bind failure is reported to the control block as the job's error.
void serve_jobs(ControlBlock& control, int slot, const std::function<BoundJob(const JobDescriptor&)>& bind,
                const std::function<bool()>& on_idle = {});

/// Fault injection for supervision tests: where a worker kills (or stops) itself.
enum class FaultPoint {
  mid_tile,     ///< after claiming the tile, before computing it
  before_done,  ///< after writing the tile's output, before marking it done
  hang,         ///< stops itself (SIGSTOP) after claiming the tile, as a hung kernel would
};
/// A planned fault: at `point` on `tile`; with a `once_file`, only while that file does not
/// exist yet (the first worker to fault creates it), so a respawned worker succeeds.
struct FaultPlan {
  FaultPoint point = FaultPoint::mid_tile;
  std::int64_t tile = 0;
  std::string once_file;
};
/// Reads TILEPOOL_FAULT="mid_tile|before_done|hang:TILE[:ONCE_FILE]" (tests only set it) and
/// arms run_tiles in this process. Throws Error(usage) on a malformed value.
void arm_fault_from_environment();

/// "[0:365, 0:4, 4:8]": a box for messages.
std::string format_box(const Box& box);

}  // namespace tilepool
