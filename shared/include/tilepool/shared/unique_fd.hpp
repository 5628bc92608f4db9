#pragma once
/// @file
/// UniqueFd: the owner of one POSIX file descriptor, closed when the owner goes. Every
/// descriptor tilepool's libraries keep (segments, files being published, worker pipes,
/// plugin probes) is held by one.

#include <unistd.h>

#include <utility>

namespace tilepool {

/// Owns one file descriptor (or none: -1) and closes it on destruction or reset. Move-only;
/// one thread at a time. The descriptor stays usable as an int through get().
class UniqueFd {
 public:
  UniqueFd() = default;
  /// Takes ownership of `fd` (-1: none).
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
  /// Gives up ownership without closing; returns the descriptor.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the descriptor, if any (close(2)'s error is not reported: the descriptor is gone
  /// either way), and owns `fd` instead.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// The two ends of a pipe.
struct PipeEnds {
  UniqueFd read;
  UniqueFd write;
};

/// pipe2(O_CLOEXEC): a pipe whose ends are close-on-exec from birth, so no program another
/// thread starts meanwhile inherits them. On failure both ends hold nothing and errno says why
/// (callers word the error: what the pipe was for, the descriptor limit).
PipeEnds make_cloexec_pipe() noexcept;

}  // namespace tilepool
