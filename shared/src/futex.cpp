#include "tilepool/shared/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace tilepool {
namespace {

// The address of the atomic's 32-bit value. std::atomic<uint32_t> is a plain 4-byte word.
const std::uint32_t* word_address(const std::atomic<std::uint32_t>& word) noexcept {
  return reinterpret_cast<const std::uint32_t*>(&word);
}

}  // namespace

void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
  struct timespec ts {};
  struct timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  // Not FUTEX_PRIVATE_FLAG: the word may be shared with other processes.
  ::syscall(SYS_futex, word_address(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept { (void)futex_wake(word, 0x7fffffff); }

int futex_wake(const std::atomic<std::uint32_t>& word, std::int64_t count) noexcept {
  if (count <= 0) return 0;
  const auto n = static_cast<int>(std::min<std::int64_t>(count, 0x7fffffff));
  const long woken = ::syscall(SYS_futex, word_address(word), FUTEX_WAKE, n, nullptr, nullptr, 0);
  return woken < 0 ? 0 : static_cast<int>(woken);
}

}  // namespace tilepool
