#pragma once
// Checks that a call throws tilepool::Error with a given code and a message that names the
// problem. Used by the shared/ and interop suites.

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>

#include "tilepool/shared/error.hpp"

namespace tilepool::testing {

inline const char* errc_name(Errc code) {
  switch (code) {
    case Errc::usage: return "usage";
    case Errc::bad_input: return "bad_input";
    case Errc::exists: return "exists";
    case Errc::no_space: return "no_space";
    case Errc::system: return "system";
    case Errc::job_failed: return "job_failed";
    case Errc::interrupted: return "interrupted";
  }
  return "?";
}

/// Success if `f()` throws tilepool::Error with `code` and a message containing every needle.
/// Any other outcome (no throw, another exception type, another code, another message) fails
/// with what actually happened.
template <class F>
::testing::AssertionResult throws_error(F&& f, Errc code, std::initializer_list<std::string_view> needles = {}) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    const std::string message = e.what();
    if (e.code() != code) {
      return ::testing::AssertionFailure() << "threw Error(" << errc_name(e.code()) << ", \"" << message
                                           << "\"), expected code " << errc_name(code);
    }
    for (const auto needle : needles) {
      if (message.find(needle) == std::string::npos) {
        return ::testing::AssertionFailure() << "threw Error(" << errc_name(e.code()) << ", \"" << message
                                             << "\"), expected the message to contain \"" << needle << "\"";
      }
    }
    return ::testing::AssertionSuccess() << "threw Error(" << errc_name(e.code()) << ", \"" << message << "\")";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-tilepool exception: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "did not throw; expected Error(" << errc_name(code) << ")";
}

/// The message of the tilepool::Error that `f()` throws; "(no error)" if it returns.
template <class F>
std::string error_message(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace tilepool::testing
