#pragma once
// Library errors describe the data; the command line adds the flag the user typed.

#include <fmt/format.h>

#include <functional>
#include <string_view>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool::cli {

/// Returns parse(value); a tilepool::Error it throws comes back with the flag and the user's
/// text (escaped: one line) in front and the same Errc: "--tile 0,8: '0' is not a positive tile extent (...)".
template <class F>
decltype(auto) for_flag(std::string_view flag, std::string_view value, F&& parse) {
  try {
    return std::invoke(std::forward<F>(parse), value);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("{} {}: {}", flag, escape_for_message(value), e.what()));
  }
}

}  // namespace tilepool::cli
