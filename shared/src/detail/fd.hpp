#pragma once
// Private to shared/: a move-only file descriptor and full-length read/write loops.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace tilepool::detail {

/// Owns one file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership without closing.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

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
