#include "tilepool/shared/allocation.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "tilepool/shared/error.hpp"

namespace tilepool {

std::shared_ptr<std::byte> allocate_bytes(std::size_t bytes, Sharing sharing) {
  const std::size_t length = std::max<std::size_t>(bytes, 1);
  const int flags = sharing == Sharing::shared_with_children ? MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE
                                                             : MAP_PRIVATE | MAP_ANONYMOUS;
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) {
    throw Error(Errc::no_space, fmt::format("cannot map {} bytes of memory: {}", bytes, std::strerror(errno)));
  }
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [length](std::byte* q) { ::munmap(q, length); });
}

AnyArray allocate_array(DType dtype, const Shape& shape, Sharing sharing) {
  const auto bytes = byte_count(shape, dtype_size(dtype));
  if (!bytes) throw Error(Errc::usage, fmt::format("an array of shape {} is too large", format_shape(shape)));
  std::shared_ptr<std::byte> memory = allocate_bytes(*bytes, sharing);
  std::byte* data = memory.get();
  return AnyArray(std::move(memory), data, dtype, shape);
}

}  // namespace tilepool
