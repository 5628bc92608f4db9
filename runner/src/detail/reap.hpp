#pragma once
// Private to runner/: stopping a worker process on a destructor path.

#include <unistd.h>

#include <boost/process/child.hpp>
#include <chrono>
#include <system_error>

namespace tilepool::detail {

/// Lets `child` exit on its own until `deadline`, then kills it (SIGKILL), and reaps it.
/// Never throws.
inline void reap_child(boost::process::child& child, std::chrono::steady_clock::time_point deadline) noexcept {
  try {
    std::error_code ec;
    while (child.running(ec) && std::chrono::steady_clock::now() < deadline) ::usleep(500);
    if (child.running(ec)) child.terminate(ec);
    if (child.valid()) child.wait(ec);
  } catch (...) {  // a destructor path: never throw
  }
}

}  // namespace tilepool::detail
