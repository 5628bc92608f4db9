#pragma once
// Private to libtilepool_kernels: the local buffers that hold a tile's declared regions, and the
// copies between them and whole arrays. Copy-mode workers fill them from their pipe; the tile
// loop fills them from shared arrays when a job checks regions (JobDescriptor::check_regions).

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>

#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/array_view.hpp"
#include "tilepool/workers/copy_protocol.hpp"

namespace tilepool {

/// A local buffer that grows to the largest region seen (memory from allocate_bytes).
struct LocalBuffer {
  std::shared_ptr<std::byte> data;
  std::size_t capacity = 0;

  std::byte* reserve(std::size_t bytes) {
    if (!data || bytes > capacity) {
      capacity = std::max(bytes, 2 * capacity);
      data = allocate_bytes(capacity, Sharing::private_to_process);
    }
    return data.get();
  }
};

/// Copies `region` of the whole array `from` into `to`, packed in C order (a window's layout).
inline void gather_region(const AnyArray& from, const Box& region, std::byte* to) {
  for_each_run(from.shape(), dtype_size(from.dtype()), region, [&](std::size_t offset, std::size_t bytes) {
    std::memcpy(to, from.data() + offset, bytes);
    to += bytes;
  });
}

/// Copies a packed `region` at `from` back into its place in the whole array `to`.
inline void scatter_region(const std::byte* from, const Box& region, const AnyArray& to) {
  for_each_run(to.shape(), dtype_size(to.dtype()), region, [&](std::size_t offset, std::size_t bytes) {
    std::memcpy(to.data() + offset, from, bytes);
    from += bytes;
  });
}

/// A window of `region` of `whole` (the job's input `input`, or kOutputWindow) held in
/// `buffer`, filled from `whole`.
inline AnyArray window_copy_of(const AnyArray& whole, const Box& region, int input, LocalBuffer& buffer) {
  std::byte* data = buffer.reserve(std::max(box_bytes(region, dtype_size(whole.dtype())), std::size_t{1}));
  gather_region(whole, region, data);
  return AnyArray::window(buffer.data, data, whole.dtype(), whole.shape(), region, input);
}

}  // namespace tilepool
