#include "tilepool/shared/byte_range.hpp"

#include <algorithm>

namespace tilepool {

std::vector<ByteRange> merge_ranges(std::vector<ByteRange> ranges) {
  std::erase_if(ranges, [](const ByteRange& r) { return r.length == 0; });
  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& a, const ByteRange& b) { return a.offset < b.offset; });
  std::vector<ByteRange> merged;
  for (const ByteRange& r : ranges) {
    if (!merged.empty() && r.offset <= merged.back().offset + merged.back().length) {
      ByteRange& last = merged.back();
      last.length = std::max(last.offset + last.length, r.offset + r.length) - last.offset;
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

std::size_t covered_bytes(std::span<const ByteRange> merged) noexcept {
  std::size_t n = 0;
  for (const ByteRange& r : merged) n += r.length;
  return n;
}

}  // namespace tilepool
