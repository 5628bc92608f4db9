#pragma once
/// @file
/// The system-call retry loop, written once (after iceoryx's posix_call): a call that a
/// signal interrupted is made again.

#include <cerrno>
#include <concepts>
#include <type_traits>

namespace tilepool {

/// Calls `f()` again while it fails with EINTR (returns -1 and sets errno to EINTR), and
/// returns the first result that is not such a failure. Any other failure comes back as it
/// is, with errno as `f` left it: `if (retry_on_eintr([&] { return ::read(fd, p, n); }) < 0)`
/// reads errno exactly as after a plain call. For calls that report errors through
/// `-1` and errno (read, write, poll, waitpid, open, ...), not for those that return an
/// error number (posix_fallocate, pthread_*). Does no allocation; safe in any thread and
/// between fork and exec if `f` is.
template <class F>
  requires std::signed_integral<std::invoke_result_t<F&>>
std::invoke_result_t<F&> retry_on_eintr(F&& f) noexcept(std::is_nothrow_invocable_v<F&>) {
  for (;;) {
    const auto result = f();
    if (result != -1 || errno != EINTR) return result;
  }
}

}  // namespace tilepool
