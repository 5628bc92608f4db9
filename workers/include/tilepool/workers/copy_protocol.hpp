#pragma once
/// @file
/// Copy mode's wire format and tile geometry, shared by the runner (which sends each tile's
/// input bytes and assembles the output) and `tilepool-worker --copy` (which computes tiles on
/// small local arrays).
///
/// The wire format: every message is a fixed CopyMessage header followed by
/// `payload_bytes` raw bytes, after the worker's "ready\n" line. Runner -> worker: `job`
/// (payload: the job's JobDescriptor, the same bytes the control block holds, made once by the
/// runner), then `tile` messages (payload: the bytes of the region of each input that the
/// kernel declares the tile reads, input after input, C order). Worker -> runner: one `result`
/// per tile, in the order the tiles arrived (payload: the tile's output bytes, C order; a
/// reduction's partial rides in the header) or `error` (payload: the message text; the error's
/// kind, an Errc, and its errno ride in the header, so the runner rethrows the same kind).
/// Both ends are one machine: native byte order.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/shape.hpp"
#include "tilepool/shared/tiling.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

inline constexpr std::uint32_t kCopyMagic = 0x59504354;  // "TCPY" in memory

/// What a copy-mode message carries.
enum class CopyKind : std::uint32_t { job = 2, tile = 3, result = 4, error = 5 };

/// The header of every copy-mode message. Plain data, written and read as raw bytes.
struct CopyMessage {
  std::uint32_t magic = kCopyMagic;
  CopyKind kind = CopyKind::job;
  std::uint64_t job_id = 0;
  std::int64_t tile = -1;
  std::uint64_t payload_bytes = 0;
  TilePartial partial{};  ///< a reduction's partial (result)
  std::int32_t error_code = static_cast<std::int32_t>(Errc::job_failed);  ///< the error's kind, an Errc (error)
  std::int32_t error_errno = 0;  ///< the errno behind the error, or 0 (error)
};
static_assert(sizeof(CopyMessage) == 56);

/// Where one tile's data lives: the region of each input it reads (KernelDef::input_region).
/// A map's tile writes its own box of the output; a reduction's, nothing (its partial rides in
/// the reply's header).
struct TileRegions {
  Box tile;                                 ///< in the iteration space (= the output's, for maps)
  std::array<Box, kMaxInputs> inputs{};     ///< each input's region, in that input's coordinates
  std::size_t request_bytes = 0;            ///< the inputs' region bytes: a `tile` message's payload
  std::size_t reply_bytes = 0;              ///< the tile's output bytes: a `result` message's payload
};

/// A job's geometry in copy mode: which bytes each tile needs and returns. The runner builds it
/// from its prepared job and the worker from that job's JobDescriptor (the `job` message), so
/// they agree on every message's size. The worker computes each tile on windows
/// (AnyArray::window) holding exactly those regions. Immutable; safe to share across threads.
class CopyPlan {
 public:
  /// `grid` covers the kernel's iteration space (iteration_shape_of: a map's is its output's shape).
  /// `params` are the job's, checked and with defaults (check_params): input regions follow them.
  static CopyPlan make(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output,
                       const TileGrid& grid, const Params& params);
  /// Rebuilds the plan from the job's descriptor (the worker's side): its kernel, arrays, grid
  /// and parameters, loading the kernel's plugin first if it has one (the runner's file:
  /// load_pinned_plugin). Throws Error as make() and load_pinned_plugin(), and Error(bad_input)
  /// for a descriptor no runner writes.
  static CopyPlan from_job(const JobDescriptor& job);

  [[nodiscard]] TileRegions regions(std::int64_t tile) const;
  [[nodiscard]] const KernelDef& kernel() const noexcept { return *kernel_; }
  [[nodiscard]] const TileGrid& grid() const noexcept { return grid_; }
  [[nodiscard]] std::span<const ArraySpec> inputs() const noexcept { return {inputs_.data(), input_count_}; }
  [[nodiscard]] const ArraySpec& output() const noexcept { return output_; }
  /// The job's parameters, checked, with the kernel's defaults.
  [[nodiscard]] const Params& params() const noexcept { return params_; }

 private:
  const KernelDef* kernel_ = nullptr;
  Params params_;
  std::array<ArraySpec, kMaxInputs> inputs_{};
  std::size_t input_count_ = 0;
  ArraySpec output_;
  TileGrid grid_;
};

/// Calls f(byte_offset, byte_length) for every contiguous run of `box` inside a C-order array of
/// `shape` with `item_size`-byte elements, in C order. Runs over trailing axes that the box
/// spans whole are merged, so a box of whole rows is one run. An empty box has no runs; a 0-d
/// array is one run of one element.
template <class F>
void for_each_run(const Shape& shape, std::size_t item_size, const Box& box, F&& f) {
  const int nd = static_cast<int>(shape.size());
  for (int a = 0; a < nd; ++a) {
    if (box.extent(a) <= 0) return;
  }
  // The innermost axis `k` that the box does not span whole (every axis after it is whole).
  int k = nd - 1;
  std::size_t run = item_size;
  while (k >= 0 && box.lo[static_cast<std::size_t>(k)] == 0 && box.hi[static_cast<std::size_t>(k)] == shape[static_cast<std::size_t>(k)]) {
    run *= static_cast<std::size_t>(shape[static_cast<std::size_t>(k)]);
    --k;
  }
  if (k < 0) {  // the whole array
    f(std::size_t{0}, run);
    return;
  }
  run *= static_cast<std::size_t>(box.extent(k));
  // Byte strides of each axis.
  std::array<std::size_t, kMaxDims> stride{};
  std::size_t s = item_size;
  for (int a = nd - 1; a >= 0; --a) {
    stride[static_cast<std::size_t>(a)] = s;
    s *= static_cast<std::size_t>(shape[static_cast<std::size_t>(a)]);
  }
  // An odometer over the axes before k; axis k contributes its start.
  std::array<std::int64_t, kMaxDims> idx{};
  for (int a = 0; a < k; ++a) idx[static_cast<std::size_t>(a)] = box.lo[static_cast<std::size_t>(a)];
  const std::size_t base_k = static_cast<std::size_t>(box.lo[static_cast<std::size_t>(k)]) * stride[static_cast<std::size_t>(k)];
  for (;;) {
    std::size_t offset = base_k;
    for (int a = 0; a < k; ++a) offset += static_cast<std::size_t>(idx[static_cast<std::size_t>(a)]) * stride[static_cast<std::size_t>(a)];
    f(offset, run);
    int a = k - 1;
    for (; a >= 0; --a) {
      const auto i = static_cast<std::size_t>(a);
      if (++idx[i] < box.hi[i]) break;
      idx[i] = box.lo[i];
    }
    if (a < 0) return;
  }
}

/// Bytes of `box` in an array of `item_size`-byte elements.
inline std::size_t box_bytes(const Box& box, std::size_t item_size) noexcept {
  return static_cast<std::size_t>(box.element_count()) * item_size;
}

}  // namespace tilepool
