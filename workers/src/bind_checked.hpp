#pragma once
// Private to libtilepool_kernels: binding a kernel to a job's arrays, for every tile loop.

#include <fmt/format.h>

#include <memory>
#include <span>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// kernel.bind(inputs, output, params), refusing a plugin's bind that returns no kernel with
/// Error(job_failed) naming it (instead of a null call on the first tile).
inline std::unique_ptr<BoundKernel> bind_checked(const KernelDef& kernel, std::span<const AnyArray> inputs, const AnyArray& output,
                                                 const Params& params) {
  std::unique_ptr<BoundKernel> bound = kernel.bind(inputs, output, params);
  if (!bound) throw Error(Errc::job_failed, fmt::format("kernel {}: bind returned no bound kernel (null)", kernel.name));
  return bound;
}

}  // namespace tilepool
