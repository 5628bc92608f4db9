#include "tilepool/shared/dispatch.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "tilepool/shared/error.hpp"

namespace tilepool {

std::int64_t DispatchPolicy::chunk_size(std::int64_t left, int workers) const noexcept {
  const std::int64_t share = left / (std::int64_t{chunk_divisor} * std::max(workers, 1));
  return std::clamp<std::int64_t>(share, 1, std::clamp<std::int64_t>(max_chunk, 1, kMaxChunk));
}

TileRange DispatchPolicy::node_block(std::int64_t tile_count, int nodes, int node) const noexcept {
  const std::int64_t first = tile_count * node / nodes;
  const std::int64_t end = tile_count * (node + 1) / nodes;
  return TileRange{.first = first, .count = end - first};
}

void DispatchPolicy::check() const {
  const auto in = [](const char* field, std::int64_t value, std::int64_t lo, std::int64_t hi) {
    if (value < lo || value > hi) throw Error(Errc::usage, fmt::format("dispatch {} {}: expected {} to {}", field, value, lo, hi));
  };
  in("chunk_divisor", chunk_divisor, 1, 1024);
  in("max_chunk", max_chunk, 1, kMaxChunk);
  in("copy_tiles_in_flight", copy_tiles_in_flight, 1, 65536);
  in("copy_bytes_in_flight", copy_bytes_in_flight, 1, std::int64_t{1} << 40);
}

}  // namespace tilepool
