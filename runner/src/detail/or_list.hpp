#pragma once
// Private to runner/: how messages list what a user may choose ("share, fork or copy").

#include <span>
#include <string>
#include <string_view>

namespace tilepool::detail {

/// "a", "a or b", "a, b or c".
inline std::string or_list(std::span<const std::string_view> items) {
  std::string text;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) text += i + 1 == items.size() ? " or " : ", ";
    text += items[i];
  }
  return text;
}

}  // namespace tilepool::detail
