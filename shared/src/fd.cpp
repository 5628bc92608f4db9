#include "detail/fd.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/posix_call.hpp"

namespace tilepool {

PipeEnds make_cloexec_pipe() noexcept {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace tilepool

namespace tilepool::detail {

long read_full(int fd, std::span<std::byte> buf, long long offset) noexcept {
  std::size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = retry_on_eintr([&] {
      return ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + static_cast<long long>(done)));
    });
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<long>(done);
}

bool write_full(int fd, std::span<const std::byte> buf) noexcept {
  std::size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = retry_on_eintr([&] { return ::write(fd, buf.data() + done, buf.size() - done); });
    if (n < 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

int reserve_range(int fd, std::uint64_t offset, std::uint64_t length) {
  if (::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(length)) == 0) return 0;
  if (errno != EOPNOTSUPP) return errno;
  constexpr std::uint64_t kChunk = std::uint64_t{16} << 20;  // a few hundred ms on a slow FUSE mount
  for (std::uint64_t done = 0; done < length; done += kChunk) {
    throw_if_interrupted();
    const std::uint64_t n = std::min(kChunk, length - done);
    if (const int err = ::posix_fallocate(fd, static_cast<off_t>(offset + done), static_cast<off_t>(n)); err != 0) return err;
  }
  return 0;
}

}  // namespace tilepool::detail
