#include "tilepool/shared/shape.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <limits>

namespace tilepool {
namespace {

// numpy's size rule (PyArray_NewFromDescr): `start` times every non-zero extent must fit a
// signed 64-bit intp; zero extents are skipped in that check and make the result 0.
std::optional<std::int64_t> checked_size(std::span<const std::int64_t> shape, std::int64_t start) noexcept {
  std::int64_t product = start;
  bool has_zero = false;
  for (const std::int64_t e : shape) {
    if (e < 0) return std::nullopt;
    if (e == 0) {
      has_zero = true;
      continue;
    }
    if (__builtin_mul_overflow(product, e, &product)) return std::nullopt;
  }
  return has_zero ? 0 : product;
}

}  // namespace

std::optional<std::int64_t> element_count(std::span<const std::int64_t> shape) noexcept {
  return checked_size(shape, 1);
}

std::optional<std::size_t> byte_count(std::span<const std::int64_t> shape, std::size_t item_size) noexcept {
  if (item_size > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  const auto bytes = checked_size(shape, static_cast<std::int64_t>(item_size));
  if (!bytes) return std::nullopt;
  return static_cast<std::size_t>(*bytes);
}

std::string format_shape(std::span<const std::int64_t> shape) {
  return fmt::format("({}{})", fmt::join(shape, ", "), shape.size() == 1 ? "," : "");
}

}  // namespace tilepool
