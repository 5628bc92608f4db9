#include "detail/fd.hpp"

#include "tilepool/shared/posix_call.hpp"

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

}  // namespace tilepool::detail
