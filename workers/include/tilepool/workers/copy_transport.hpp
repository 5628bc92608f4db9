#pragma once
/// @file
/// Copy mode's transport, the runner's end of a copy-mode worker's pipes (the worker's end is
/// copy_worker.cpp beside it; the wire format is copy_protocol.hpp). A CopyChannel claims
/// tiles for its worker's slot, sends the bytes of the input regions each reads in batches,
/// and reads each result into its place in the output: every array byte crosses a pipe.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tilepool/shared/control_block.hpp"
#include "tilepool/workers/copy_protocol.hpp"

namespace tilepool {

/// A copy-mode job as the runner's transport sees it: its geometry and arrays. What the job
/// is (its id, its range of tiles, what its worker is told) is the control block's
/// JobDescriptor.
struct CopyJob {
  std::optional<CopyPlan> plan;
  std::vector<AnyArray> inputs;
  AnyArray output;
};

/// The runner's end of one copy-mode worker's non-blocking stdin/stdout pipes. Several tiles
/// are in flight at once so the pipe never runs dry while the worker computes:
///  - requests are batched: one writev carries many tiles' headers and rows; long rows are
///    written straight from the input arrays, short ones gathered into one staging buffer;
///  - replies are read in large chunks and copied to their place in the output; a large
///    payload's remainder is read straight into the output rows (readv, no staging copy).
/// One per worker, used by one thread.
class CopyChannel {
 public:
  /// How a transfer ended.
  enum class Outcome {
    drained,      ///< no tile of the job is left for this worker
    worker_gone,  ///< EOF, a broken pipe, or a reply that breaks the protocol (reported)
    overdue,      ///< the oldest tile in flight outlived the tile timeout
    job_failed,   ///< the job failed or was abandoned: the worker may be mid-message
  };

  CopyChannel();
  ~CopyChannel();
  CopyChannel(const CopyChannel&) = delete;
  CopyChannel& operator=(const CopyChannel&) = delete;

  /// Moves the tiles of `control`'s current job, claimed for `slot`, through the worker on
  /// `to_fd` and `from_fd` until one of the Outcomes; `job` is that job's plan and arrays. A
  /// worker not yet told about the job is first sent its JobDescriptor (a `job` message). `overdue(since_ns)` says whether a tile in flight
  /// since then has waited too long. Array bytes sent and received are added to `bytes_copied`.
  /// Throws Error(system) if poll fails.
  Outcome transfer(ControlBlock& control, int slot, const CopyJob& job, int to_fd, int from_fd,
                   const std::function<bool(std::int64_t)>& overdue, std::atomic<std::uint64_t>& bytes_copied);
  /// The tile the worker was computing when a transfer ended early (workers answer in order:
  /// the oldest in flight), or -1.
  [[nodiscard]] std::int64_t oldest_tile() const noexcept;
  /// Forgets everything in flight and which job the worker was told about (a new worker).
  void reset() noexcept;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace tilepool
