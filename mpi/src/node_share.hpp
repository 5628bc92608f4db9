#pragma once
// Private to mpi/: which tiles a node runs and which bytes of each array it needs for them.

#include <mpi.h>

#include <span>
#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/byte_range.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool::mpi {

/// The tiles node `node` of `nodes` runs: a contiguous block in tile order. Blocks differ by
/// at most one tile (static split: every node must read its inputs' regions before it starts,
/// so a node cannot take tiles from another mid-job).
TileRange node_tiles(std::int64_t tile_count, int nodes, int node);

/// The byte ranges (of the data, merged) of input `input` that the tiles `range` of `grid`
/// read: each tile's KernelDef input region (its halo, its row or column block), for the job's
/// parameters (`params`: any; the kernel's defaults are filled in).
std::vector<ByteRange> input_ranges(const KernelDef& kernel, std::size_t input, std::span<const ArraySpec> inputs,
                                    const TileGrid& grid, TileRange range, const Params& params);

/// The byte ranges (of the data, merged) of the output that the tiles `range` of a map's
/// `grid` write (the grid covers the output).
std::vector<ByteRange> output_ranges(const ArraySpec& output, const TileGrid& grid, TileRange range);

/// A committed MPI datatype of the bytes at `ranges` (displacements from a base address), for
/// sending, receiving or writing a node's share of an array with one call. Move-only; frees
/// the type.
class RangesType {
 public:
  explicit RangesType(std::span<const ByteRange> ranges);
  RangesType(const RangesType&) = delete;
  RangesType& operator=(const RangesType&) = delete;
  ~RangesType();
  [[nodiscard]] MPI_Datatype get() const noexcept { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

}  // namespace tilepool::mpi
