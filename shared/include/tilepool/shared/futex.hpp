#pragma once
/// @file
/// Futex wait/wake on a 32-bit word that may live in memory shared between processes.
/// (std::atomic::wait uses private futexes, which do not work across processes.)

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tilepool {

/// Sleeps while `word` == `expected`, at most `timeout` (negative: no limit). Returns early on
/// a wake, a signal or a spurious wake-up: callers re-check their condition in a loop.
void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1)) noexcept;
/// Wakes every process/thread sleeping on `word`.
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;
/// Wakes at most `count` processes/threads sleeping on `word` (none if `count` <= 0); returns
/// how many it woke.
int futex_wake(const std::atomic<std::uint32_t>& word, std::int64_t count) noexcept;

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<std::uint32_t>) == 4);

}  // namespace tilepool
