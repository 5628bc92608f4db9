#pragma once
/// @file
/// Dispatch policy: how a job's tiles are handed out, in one place. The runner chooses it
/// (PoolOptions::dispatch, JobSpec::dispatch) and writes it into the job's descriptor, so every
/// process follows the same policy:
///  - within a pool, ControlBlock::claim_next_tile takes tiles from the shared cursor in
///    chunks (guided self-scheduling: a share of what is left, shrinking to one tile at the end);
///  - copy mode's channel keeps at most so many tiles, and request bytes, in flight per worker;
///  - tilepool-mpi gives each node one contiguous block (a static split: a node reads its inputs'
///    regions before it starts, so it cannot take another node's tiles mid-job).
/// Plain data: it crosses processes in the control block and copy mode's job message.

#include <cstdint>

#include "tilepool/shared/tiling.hpp"

namespace tilepool {

/// The most tiles one claim takes from the cursor, whatever the policy: a worker's finished
/// tiles reach the job's done counter once per chunk, so progress lags by at most this many per
/// worker.
inline constexpr std::int64_t kMaxChunk = 64;

/// How a job's tiles are handed out (see the file comment). The defaults are what tilepool has
/// measured best on its benchmarks; a caller changes them for a kernel whose tiles cost very
/// unequal times (smaller chunks) or a copy-mode job of huge tiles (fewer in flight).
struct DispatchPolicy {
  /// A claim takes (tiles left) / (chunk_divisor x workers) tiles, at least 1, at most
  /// max_chunk: with the default 4, each worker's chunk is a quarter of its fair share of what
  /// is left. 1 to 1024.
  std::int32_t chunk_divisor = 4;
  /// 1 (one tile per claim: dynamic scheduling) to kMaxChunk.
  std::int32_t max_chunk = 64;
  /// Copy mode: tiles a worker's channel sends ahead of the results it has read, 1 to 65536 ...
  std::int32_t copy_tiles_in_flight = 1024;
  /// ... while their request bytes are under this (at least one tile is always in flight).
  std::int64_t copy_bytes_in_flight = std::int64_t{2} << 20;

  /// Tiles the next claim takes when `left` tiles are left for `workers` workers (>= 1).
  [[nodiscard]] std::int64_t chunk_size(std::int64_t left, int workers) const noexcept;
  /// The tiles node `node` (0-based) of `nodes` runs out of `tile_count`: a contiguous block in
  /// tile order; blocks differ by at most one tile and cover every tile once.
  [[nodiscard]] TileRange node_block(std::int64_t tile_count, int nodes, int node) const noexcept;
  /// Throws Error(usage) naming the first field out of its range ("dispatch max_chunk 0: expected
  /// 1 to 64").
  void check() const;

  friend bool operator==(const DispatchPolicy&, const DispatchPolicy&) = default;
};

}  // namespace tilepool
