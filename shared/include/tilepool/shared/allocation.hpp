#pragma once
/// @file
/// Unnamed memory for arrays and control blocks: the one place that allocates it. Named memory
/// (segments a process can attach by name) is Segment's job; this is everything else.

#include <cstddef>
#include <memory>

#include "tilepool/shared/array_view.hpp"

namespace tilepool {

/// Who can see an allocation.
enum class Sharing {
  private_to_process,    ///< this process only (a forked child gets a copy-on-write copy)
  shared_with_children,  ///< MAP_SHARED: children forked while it lives see the same pages
};

/// Zero-filled, page-aligned anonymous memory of `bytes` bytes (at least one page is mapped,
/// so 0 is fine). Shared-with-children memory is pre-faulted (MAP_POPULATE): children then write
/// it without a fault each. The memory is unmapped when the last shared_ptr copy goes. Throws
/// Error(no_space) if the kernel refuses the mapping.
std::shared_ptr<std::byte> allocate_bytes(std::size_t bytes, Sharing sharing);

/// A zero-filled C-order array in memory from allocate_bytes. Throws Error(usage) if the shape's
/// byte size overflows, Error(no_space) as allocate_bytes.
AnyArray allocate_array(DType dtype, const Shape& shape, Sharing sharing);

/// True if [p, p + n) lies in writable memory shared with children (a MAP_SHARED mapping, per
/// /proc/self/maps): what a child forked now writes there, this process sees.
bool is_shared_with_children(const void* p, std::size_t n);

}  // namespace tilepool
