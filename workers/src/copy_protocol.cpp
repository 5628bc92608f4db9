#include "tilepool/workers/copy_protocol.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

std::string text_of(const char* field, std::size_t capacity) { return std::string(field, strnlen(field, capacity)); }

// The box of a whole array.
Box whole_box(const Shape& shape) {
  Box b;
  b.ndim = static_cast<int>(shape.size());
  for (std::size_t a = 0; a < shape.size(); ++a) b.hi[a] = shape[a];
  return b;
}

// `box` moved so that `origin` becomes 0.
Box shifted(const Box& box, const Box& origin) {
  Box b = box;
  for (std::size_t a = 0; a < static_cast<std::size_t>(box.ndim); ++a) {
    b.lo[a] -= origin.lo[a];
    b.hi[a] -= origin.lo[a];
  }
  return b;
}

ArraySpec spec_from(std::int32_t dtype, std::int32_t ndim, const std::int64_t* shape, const char* what) {
  if (dtype < 0 || dtype >= kDTypeCount || ndim < 0 || ndim > kMaxDims) {
    throw Error(Errc::bad_input, std::string("copy-mode job setup: bad ") + what + " (dtype " + std::to_string(dtype) +
                                     ", " + std::to_string(ndim) + " axes)");
  }
  return ArraySpec{static_cast<DType>(dtype), Shape(shape, shape + ndim)};
}

}  // namespace

CopyPlan CopyPlan::make(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output,
                        const TileGrid& grid) {
  if (inputs.size() > kMaxInputs) throw Error(Errc::usage, "too many inputs (at most " + std::to_string(kMaxInputs) + ")");
  CopyPlan p;
  p.kernel_ = &kernel;
  std::copy(inputs.begin(), inputs.end(), p.inputs_.begin());
  p.input_count_ = inputs.size();
  p.output_ = output;
  p.grid_ = grid;
  const Shape& space = grid.shape();
  // matmul tiles its output; each tile reads a row block of A and a column block of B.
  const bool is_matmul = kernel.name == "matmul" && inputs.size() == 2 && inputs[0].shape.size() == 2 &&
                         inputs[1].shape.size() == 2 && space.size() == 2;
  p.access_ = is_matmul ? Access::matmul : Access::same_box;
  if (!is_matmul) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].shape != space) {
        throw Error(Errc::usage, "copy mode: kernel " + std::string(kernel.name) + " reads input " + std::to_string(i + 1) +
                                     " of shape " + format_shape(inputs[i].shape) + " over tiles of " + format_shape(space) +
                                     "; copy mode does not know which part of it a tile needs");
      }
    }
    if (kernel.reduction == Reduction::none && output.shape != space) {
      throw Error(Errc::usage, "copy mode: kernel " + std::string(kernel.name) + " writes an output of shape " +
                                   format_shape(output.shape) + " over tiles of " + format_shape(space));
    }
  }
  return p;
}

CopyJobSetup CopyPlan::setup(std::uint64_t job_id, const KernelDef& kernel, std::span<const ArraySpec> inputs,
                             const ArraySpec& output, std::span<const std::int64_t> tile, const Params& params) {
  if (inputs.size() > kMaxInputs) throw Error(Errc::usage, "too many inputs (at most " + std::to_string(kMaxInputs) + ")");
  CopyJobSetup s;
  s.job_id = job_id;
  JobDescriptor::set_text(s.kernel, sizeof s.kernel, kernel.name, "kernel name");
  JobDescriptor::set_text(s.params, sizeof s.params, params.to_text(), "--param list");
  s.input_count = static_cast<std::uint32_t>(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    s.input_dtype[i] = static_cast<std::int32_t>(inputs[i].dtype);
    s.input_ndim[i] = static_cast<std::int32_t>(inputs[i].shape.size());
    std::copy(inputs[i].shape.begin(), inputs[i].shape.end(), s.input_shape[i]);
  }
  s.output_dtype = static_cast<std::int32_t>(output.dtype);
  s.output_ndim = static_cast<std::int32_t>(output.shape.size());
  std::copy(output.shape.begin(), output.shape.end(), s.output_shape);
  if (tile.size() > static_cast<std::size_t>(kMaxDims)) throw Error(Errc::usage, "--tile has too many extents");
  s.tile_ndim = static_cast<std::int32_t>(tile.size());
  std::copy(tile.begin(), tile.end(), s.tile);
  return s;
}

CopyPlan CopyPlan::from_setup(const CopyJobSetup& setup) {
  const KernelDef& kernel = find_kernel(text_of(setup.kernel, sizeof setup.kernel));
  if (setup.input_count > kMaxInputs || setup.tile_ndim < 0 || setup.tile_ndim > kMaxDims) {
    throw Error(Errc::bad_input, "copy-mode job setup: bad input count or tile");
  }
  std::vector<ArraySpec> inputs;
  for (std::uint32_t i = 0; i < setup.input_count; ++i) {
    inputs.push_back(spec_from(setup.input_dtype[i], setup.input_ndim[i], setup.input_shape[i], "input"));
  }
  const ArraySpec output = spec_from(setup.output_dtype, setup.output_ndim, setup.output_shape, "output");
  const Shape tile(setup.tile, setup.tile + setup.tile_ndim);
  return make(kernel, inputs, output, TileGrid::make(kernel.iteration_shape(inputs, output), tile));
}

TileRegions CopyPlan::regions(std::int64_t tile) const {
  TileRegions r;
  r.tile = grid_.box(tile);
  const int nd = r.tile.ndim;
  if (access_ == Access::matmul) {
    const std::int64_t k = inputs_[0].shape[1];
    Box a = r.tile;  // rows of A, every column
    a.lo[1] = 0;
    a.hi[1] = k;
    Box b = r.tile;  // every row of B, the tile's columns
    b.lo[0] = 0;
    b.hi[0] = k;
    r.inputs[0] = a;
    r.inputs[1] = b;
    r.local_output = r.tile;
    r.local_tile = shifted(r.tile, r.tile);
  } else {
    // The tile grown by the kernel's halo on the last two axes, clamped to the array.
    Box grown = r.tile;
    const std::int64_t halo = kernel_->halo;
    for (int a = std::max(0, nd - 2); a < nd && halo > 0; ++a) {
      const auto i = static_cast<std::size_t>(a);
      grown.lo[i] = std::max<std::int64_t>(0, grown.lo[i] - halo);
      grown.hi[i] = std::min(grid_.shape()[i], grown.hi[i] + halo);
    }
    for (std::size_t i = 0; i < input_count_; ++i) r.inputs[i] = grown;
    r.local_output = kernel_->reduction == Reduction::none ? grown : whole_box(output_.shape);
    r.local_tile = shifted(r.tile, grown);
  }
  for (std::size_t i = 0; i < input_count_; ++i) r.request_bytes += box_bytes(r.inputs[i], dtype_size(inputs_[i].dtype));
  r.reply_bytes = kernel_->reduction == Reduction::none ? box_bytes(r.tile, dtype_size(output_.dtype)) : 0;
  return r;
}

}  // namespace tilepool
