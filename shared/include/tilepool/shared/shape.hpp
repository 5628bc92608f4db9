#pragma once
/// @file
/// N-D shapes: element counts with overflow checks, and printing.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace tilepool {

/// The most axes an array may have (numpy 1.x's NPY_MAXDIMS).
inline constexpr int kMaxDims = 32;

/// Extents of an N-D C-order array, outermost first. Empty means a 0-d (scalar) array.
using Shape = std::vector<std::int64_t>;

/// The number of elements, or nullopt if an extent is negative or the product of the non-zero
/// extents overflows int64. Zero-size axes are skipped in that check, as numpy does, so the
/// verdict does not depend on where a 0 sits: (2**62, 0, 2**62) is refused like (2**62, 2**62, 0).
std::optional<std::int64_t> element_count(std::span<const std::int64_t> shape) noexcept;
/// The number of bytes, or nullopt on a negative extent or when the item size times the product
/// of the non-zero extents overflows int64: exactly the shapes numpy refuses ("array is too
/// big", PyArray_NewFromDescr), so tilepool never accepts or writes an array numpy cannot open.
std::optional<std::size_t> byte_count(std::span<const std::int64_t> shape, std::size_t item_size) noexcept;
/// "(365, 16, 16)" as numpy prints it, "(5,)" for 1-D, "()" for 0-d.
std::string format_shape(std::span<const std::int64_t> shape);

}  // namespace tilepool
