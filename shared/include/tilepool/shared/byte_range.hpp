#pragma once
/// @file
/// Byte ranges of an array's data or a segment: what a node of a distributed job reserves,
/// reads and writes when it holds only its share of an array.

#include <cstddef>
#include <span>
#include <vector>

namespace tilepool {

/// The bytes [offset, offset + length). A plain value.
struct ByteRange {
  std::size_t offset = 0;
  std::size_t length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

/// `ranges` sorted by offset with overlapping and touching ranges joined and empty ones dropped:
/// the fewest ranges covering the same bytes.
std::vector<ByteRange> merge_ranges(std::vector<ByteRange> ranges);

/// The bytes the ranges cover (after merging, each byte once).
std::size_t covered_bytes(std::span<const ByteRange> merged) noexcept;

}  // namespace tilepool
