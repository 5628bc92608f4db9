#include "tilepool/shared/tiling.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool {

std::int64_t Box::element_count() const noexcept {
  std::int64_t n = 1;
  for (int a = 0; a < ndim; ++a) n *= extent(a);
  return n;
}

Shape Box::extents() const {
  Shape s(static_cast<std::size_t>(ndim));
  for (int a = 0; a < ndim; ++a) s[static_cast<std::size_t>(a)] = extent(a);
  return s;
}

bool operator==(const Box& a, const Box& b) noexcept {
  if (a.ndim != b.ndim) return false;
  for (std::size_t i = 0; i < static_cast<std::size_t>(a.ndim); ++i) {
    if (a.lo[i] != b.lo[i] || a.hi[i] != b.hi[i]) return false;
  }
  return true;
}

TileGrid TileGrid::make(const Shape& shape, std::span<const std::int64_t> tile) {
  if (shape.size() > static_cast<std::size_t>(kMaxDims)) {
    throw Error(Errc::usage, fmt::format("array has {} axes; at most {} are supported", shape.size(), kMaxDims));
  }
  if (!element_count(shape)) {
    throw Error(Errc::usage, fmt::format("array shape {} has a negative extent or too many elements", format_shape(shape)));
  }
  if (tile.size() > shape.size()) {
    throw Error(Errc::usage, fmt::format("tile {} has {} extents but the array {} has only {} axes",
                                         format_shape(Shape(tile.begin(), tile.end())), tile.size(), format_shape(shape),
                                         shape.size()));
  }
  if (tile.empty() && !shape.empty()) {
    throw Error(Errc::usage, "a tile needs at least one extent (for the array's last axis)");
  }
  const std::size_t lead = shape.size() - tile.size();
  for (std::size_t i = 0; i < tile.size(); ++i) {
    if (tile[i] <= 0) {
      throw Error(Errc::usage, fmt::format("tile extent {} on axis {}: extents must be positive", tile[i], lead + i));
    }
  }
  TileGrid g;
  g.shape_ = shape;
  g.tile_.resize(shape.size());
  g.grid_.resize(shape.size());
  g.count_ = 1;
  for (std::size_t a = 0; a < shape.size(); ++a) {
    const std::int64_t extent = shape[a];
    std::int64_t t = a < lead ? extent : std::min(tile[a - lead], extent);
    // A zero-length axis has no tiles; keep the extent 1 so arithmetic stays defined.
    if (t == 0) t = 1;
    g.tile_[a] = t;
    g.grid_[a] = (extent + t - 1) / t;
    g.count_ *= g.grid_[a];
  }
  return g;
}

Shape TileGrid::parse_extents(std::string_view text) {
  Shape out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view part = text.substr(pos, comma - pos);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || end != part.data() + part.size() || v <= 0) {
      constexpr std::string_view kExpected = "expected positive integers separated by commas, like 4,4";
      if (text.empty()) throw Error(Errc::usage, fmt::format("no tile extents ({})", kExpected));
      if (part.empty()) throw Error(Errc::usage, fmt::format("item {} of the tile extents is empty ({})", out.size() + 1, kExpected));
      if (ec == std::errc::result_out_of_range && !part.starts_with('-')) {
        throw Error(Errc::usage, fmt::format("tile extent {} is out of range: expected at most {}", escape_for_message(part),
                                             std::numeric_limits<std::int64_t>::max()));
      }
      throw Error(Errc::usage, fmt::format("'{}' is not a positive tile extent ({})", escape_for_message(part), kExpected));
    }
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

Box TileGrid::box(std::int64_t index) const noexcept {
  Box b;
  b.ndim = ndim();
  for (int a = b.ndim - 1; a >= 0; --a) {
    const auto i = static_cast<std::size_t>(a);
    std::int64_t c = 0;
    // A 32-bit division where both fit (every grid a job can hold today): several times faster
    // than a 64-bit one on x86, and this runs once per tile.
    if (((static_cast<std::uint64_t>(index) | static_cast<std::uint64_t>(grid_[i])) >> 32) == 0) {
      const auto n = static_cast<std::uint32_t>(index);
      const auto g = static_cast<std::uint32_t>(grid_[i]);
      c = n % g;
      index = n / g;
    } else {
      c = index % grid_[i];
      index /= grid_[i];
    }
    b.lo[i] = c * tile_[i];
    b.hi[i] = std::min(b.lo[i] + tile_[i], shape_[i]);
  }
  return b;
}

}  // namespace tilepool
