#pragma once
// Private to mpi/: which bytes of each array a node needs for its tiles (which tiles: the job's
// DispatchPolicy::node_block).

#include <mpi.h>

#include <span>
#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/byte_range.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool::mpi {

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
