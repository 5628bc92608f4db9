#include "tilepool/workers/copy_protocol.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool {

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

CopyPlan CopyPlan::from_job(const JobDescriptor& job) {
  if (job.input_count > kMaxInputs || job.ndim < 0 || job.ndim > kMaxDims || job.tile_ndim < 0 || job.tile_ndim > kMaxDims) {
    throw Error(Errc::bad_input, fmt::format("copy-mode job: {} inputs, {} axes, {} tile extents", job.input_count, job.ndim,
                                             job.tile_ndim));
  }
  if (!job.plugin_path().empty()) (void)load_pinned_plugin(job.plugin_path());
  const KernelDef& kernel = find_kernel(job.kernel_name());
  std::vector<ArraySpec> inputs;
  for (std::uint32_t i = 0; i < job.input_count; ++i) {
    inputs.push_back(ArraySpec{job.input_arrays[i].dtype(), job.input_arrays[i].shape()});
  }
  const ArraySpec output{job.output_array.dtype(), job.output_array.shape()};
  const Params params = Params::from_text(job.params_text());
  return make(kernel, inputs, output, TileGrid::make(job.shape_vector(), job.tile_vector()), params);
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
