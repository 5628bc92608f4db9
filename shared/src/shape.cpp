#include "tilepool/shared/shape.hpp"

#include <limits>

namespace tilepool {

std::optional<std::int64_t> element_count(std::span<const std::int64_t> shape) noexcept {
  std::int64_t n = 1;
  for (const std::int64_t e : shape) {
    if (e < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, e, &n)) return std::nullopt;
  }
  return n;
}

std::optional<std::size_t> byte_count(std::span<const std::int64_t> shape, std::size_t item_size) noexcept {
  const auto n = element_count(shape);
  if (!n) return std::nullopt;
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<std::size_t>(*n), item_size, &bytes)) return std::nullopt;
  // Offsets into a mapping are computed in signed arithmetic too.
  if (bytes > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  return bytes;
}

std::string format_shape(std::span<const std::int64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  s += ")";
  return s;
}

}  // namespace tilepool
