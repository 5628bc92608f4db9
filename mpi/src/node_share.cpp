#include "node_share.hpp"

#include <limits>

#include "cluster.hpp"
#include "tilepool/workers/copy_protocol.hpp"

namespace tilepool::mpi {

std::vector<ByteRange> input_ranges(const KernelDef& kernel, std::size_t input, std::span<const ArraySpec> inputs,
                                    const TileGrid& grid, TileRange range, const Params& params) {
  const ArraySpec& spec = inputs[input];
  const Params checked = check_params(kernel, params);
  std::vector<ByteRange> ranges;
  for (std::int64_t t = range.first; t < range.first + range.count; ++t) {
    // A hook that fails (or gives a region that is no region) fails the job, as it does in
    // tilepool run's copy mode (exit 1): the kernel's fault, not the user's input.
    const Box region = [&] {
      try {
        return input_region(kernel, input, grid.box(t), inputs, checked);
      } catch (const Error& e) {
        throw Error(Errc::job_failed, e.what());
      }
    }();
    for_each_run(spec.shape, dtype_size(spec.dtype), region,
                 [&](std::size_t offset, std::size_t length) { ranges.push_back(ByteRange{offset, length}); });
  }
  return merge_ranges(std::move(ranges));
}

std::vector<ByteRange> output_ranges(const ArraySpec& output, const TileGrid& grid, TileRange range) {
  std::vector<ByteRange> ranges;
  for (std::int64_t t = range.first; t < range.first + range.count; ++t) {
    for_each_run(output.shape, dtype_size(output.dtype), grid.box(t),
                 [&](std::size_t offset, std::size_t length) { ranges.push_back(ByteRange{offset, length}); });
  }
  return merge_ranges(std::move(ranges));
}

RangesType::RangesType(std::span<const ByteRange> ranges) {
  // MPI counts in int: a range longer than 1 GiB goes as several blocks.
  constexpr std::size_t kMaxBlock = std::size_t{1} << 30;
  std::vector<int> lengths;
  std::vector<MPI_Aint> displacements;
  for (const ByteRange& r : ranges) {
    for (std::size_t done = 0; done < r.length; done += kMaxBlock) {
      lengths.push_back(static_cast<int>(std::min(kMaxBlock, r.length - done)));
      displacements.push_back(static_cast<MPI_Aint>(r.offset + done));
    }
  }
  TILEPOOL_CHECK(lengths.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()));
  check_mpi(MPI_Type_create_hindexed(static_cast<int>(lengths.size()), lengths.data(), displacements.data(), MPI_BYTE, &type_),
            "MPI_Type_create_hindexed");
  check_mpi(MPI_Type_commit(&type_), "MPI_Type_commit");
}

RangesType::~RangesType() {
  if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
}

}  // namespace tilepool::mpi
