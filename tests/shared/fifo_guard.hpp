#pragma once
// Runs a call that is handed a FIFO and must refuse it, not wait on it: opening a FIFO
// read-only blocks until a writer appears, which in a test would hang the whole suite.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>

namespace tilepool::testing {

/// The result of `call`, or a failure if it is still blocked after `timeout`; a blocked call
/// is released by opening the FIFO for writing, so the test ends either way.
inline ::testing::AssertionResult returns_without_blocking(const std::filesystem::path& fifo,
                                                           const std::function<::testing::AssertionResult()>& call,
                                                           std::chrono::seconds timeout = std::chrono::seconds(5)) {
  auto result = std::async(std::launch::async, call);
  if (result.wait_for(timeout) == std::future_status::ready) return result.get();
  const int writer = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  (void)result.get();
  if (writer >= 0) ::close(writer);
  return ::testing::AssertionFailure() << "blocked for " << timeout.count() << " s opening the FIFO " << fifo;
}

}  // namespace tilepool::testing
