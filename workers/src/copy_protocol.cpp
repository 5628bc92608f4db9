#include "tilepool/workers/copy_protocol.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool {
namespace {

std::string text_of(const char* field, std::size_t capacity) { return std::string(field, strnlen(field, capacity)); }

ArraySpec spec_from(std::int32_t dtype, std::int32_t ndim, const std::int64_t* shape, const char* what) {
  if (dtype < 0 || dtype >= kDTypeCount || ndim < 0 || ndim > kMaxDims) {
    throw Error(Errc::bad_input, fmt::format("copy-mode job setup: bad {} (dtype {}, {} axes)", what, dtype, ndim));
  }
  return ArraySpec{static_cast<DType>(dtype), Shape(shape, shape + ndim)};
}

}  // namespace

CopyPlan CopyPlan::make(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output,
                        const TileGrid& grid, const Params& params) {
  if (inputs.size() > kMaxInputs) throw Error(Errc::usage, fmt::format("{} inputs; at most {}", inputs.size(), kMaxInputs));
  CopyPlan p;
  p.kernel_ = &kernel;
  p.params_ = check_params(kernel, params);
  std::copy(inputs.begin(), inputs.end(), p.inputs_.begin());
  p.input_count_ = inputs.size();
  p.output_ = output;
  p.grid_ = grid;
  return p;
}

CopyJobSetup CopyPlan::setup(std::uint64_t job_id, const KernelDef& kernel, std::span<const ArraySpec> inputs,
                             const ArraySpec& output, std::span<const std::int64_t> tile, const Params& params) {
  if (inputs.size() > kMaxInputs) throw Error(Errc::usage, fmt::format("{} inputs; at most {}", inputs.size(), kMaxInputs));
  CopyJobSetup s;
  s.job_id = job_id;
  JobDescriptor::set_text(s.kernel, sizeof s.kernel, kernel.name, "kernel name");
  JobDescriptor::set_text(s.params, sizeof s.params, params.to_text(), "parameter list");
  JobDescriptor::set_text(s.plugin, sizeof s.plugin, pinned_plugin_of(kernel), "plugin path");
  s.input_count = static_cast<std::uint32_t>(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    s.input_dtype[i] = static_cast<std::int32_t>(inputs[i].dtype);
    s.input_ndim[i] = static_cast<std::int32_t>(inputs[i].shape.size());
    std::copy(inputs[i].shape.begin(), inputs[i].shape.end(), s.input_shape[i]);
  }
  s.output_dtype = static_cast<std::int32_t>(output.dtype);
  s.output_ndim = static_cast<std::int32_t>(output.shape.size());
  std::copy(output.shape.begin(), output.shape.end(), s.output_shape);
  if (tile.size() > static_cast<std::size_t>(kMaxDims)) {
    throw Error(Errc::usage, fmt::format("{} tile extents; at most {}", tile.size(), kMaxDims));
  }
  s.tile_ndim = static_cast<std::int32_t>(tile.size());
  std::copy(tile.begin(), tile.end(), s.tile);
  return s;
}

CopyPlan CopyPlan::from_setup(const CopyJobSetup& setup) {
  if (setup.plugin[0] != '\0') (void)load_pinned_plugin(text_of(setup.plugin, sizeof setup.plugin));
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
  const Params params = Params::from_text(text_of(setup.params, sizeof setup.params));
  return make(kernel, inputs, output, TileGrid::make(iteration_shape_of(kernel, inputs, output), tile), params);
}

TileRegions CopyPlan::regions(std::int64_t tile) const {
  TileRegions r;
  r.tile = grid_.box(tile);
  for (std::size_t i = 0; i < input_count_; ++i) {
    r.inputs[i] = input_region(*kernel_, i, r.tile, inputs(), params_);
    r.request_bytes += box_bytes(r.inputs[i], dtype_size(inputs_[i].dtype));
  }
  r.reply_bytes = kernel_->reduction == Reduction::none ? box_bytes(r.tile, dtype_size(output_.dtype)) : 0;
  return r;
}

}  // namespace tilepool
