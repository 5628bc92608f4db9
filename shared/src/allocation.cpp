#include "tilepool/shared/allocation.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <string>
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

bool is_shared_with_children(const void* p, std::size_t n) {
  if (n == 0) return true;
  const auto lo = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t hi = lo + n;
  std::uintptr_t covered = lo;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // "start-end perms offset dev inode [path]", addresses in hex, ascending.
    std::uintptr_t start = 0, end = 0;
    const char* s = line.data();
    const char* e = s + line.size();
    auto r1 = std::from_chars(s, e, start, 16);
    if (r1.ec != std::errc() || r1.ptr == e || *r1.ptr != '-') continue;
    auto r2 = std::from_chars(r1.ptr + 1, e, end, 16);
    if (r2.ec != std::errc() || e - r2.ptr < 5) continue;
    const char* perms = r2.ptr + 1;
    if (end <= covered) continue;
    if (start > covered) return false;  // a hole
    if (perms[1] != 'w' || perms[3] != 's') return false;
    covered = end;
    if (covered >= hi) return true;
  }
  return false;
}

}  // namespace tilepool
