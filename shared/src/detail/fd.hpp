#pragma once
// Private to shared/: full-length read/write loops and a stoppable fallocate.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "tilepool/shared/unique_fd.hpp"

namespace tilepool::detail {

/// The public UniqueFd (unique_fd.hpp), by the name shared/ has used for it.
using UniqueFd = tilepool::UniqueFd;

/// Reads until `buf` is full or EOF, retrying on EINTR; returns bytes read or -1 (errno set).
long read_full(int fd, std::span<std::byte> buf, long long offset) noexcept;
/// Writes all of `buf`, retrying on EINTR and short writes; returns false on error (errno set).
bool write_full(int fd, std::span<const std::byte> buf) noexcept;

/// posix_fallocate(fd, offset, length), stoppable: where the filesystem has no fallocate (a
/// FUSE mount), glibc writes into every block of the range, which for a large file takes
/// seconds with no signal looked at. Here that happens a chunk at a time, with
/// throw_if_interrupted (Error(interrupted)) between chunks. Returns 0 or the error number,
/// as posix_fallocate does.
int reserve_range(int fd, std::uint64_t offset, std::uint64_t length);

}  // namespace tilepool::detail
