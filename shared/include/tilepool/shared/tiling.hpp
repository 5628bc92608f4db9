#pragma once
/// @file
/// Cutting an N-D array into tiles over its last k axes.

#include <array>
#include <cstdint>
#include <span>

#include "tilepool/shared/shape.hpp"

namespace tilepool {

/// A contiguous run of a tile grid's tiles, in tile order: tiles [first, first + count).
/// count < 0 means every tile from `first` to the end; the default is the whole grid.
struct TileRange {
  std::int64_t first = 0;
  std::int64_t count = -1;
};

/// A tile's partial result, for reductions: a kernel's TileResult, combined by the runner in
/// tile order (sum_in_tile_order). Plain data: it crosses processes in the control block and
/// copy mode's messages.
struct TilePartial {
  double f64;
  std::int64_t i64;
};

/// A half-open box [lo, hi) in an N-D index space. Fixed capacity, no allocation, so boxes
/// are cheap to make on the per-tile hot path.
struct Box {
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> lo{};
  std::array<std::int64_t, kMaxDims> hi{};

  [[nodiscard]] std::int64_t extent(int axis) const noexcept { return hi[static_cast<std::size_t>(axis)] - lo[static_cast<std::size_t>(axis)]; }
  [[nodiscard]] std::int64_t element_count() const noexcept;
  /// The box's extents as a Shape.
  [[nodiscard]] Shape extents() const;
  friend bool operator==(const Box& a, const Box& b) noexcept;
};

/// A grid of tiles over `shape`: tile extents are given for the last k axes and the leading
/// axes are whole. Edge tiles are partial; an extent larger than its axis gives one tile
/// along it. Tiles are numbered in C order over the grid. Immutable, cheap to copy, safe to
/// share across threads.
class TileGrid {
 public:
  /// Throws Error(usage) if `tile` is empty, has more axes than `shape`, or has a
  /// non-positive extent.
  static TileGrid make(const Shape& shape, std::span<const std::int64_t> tile);
  /// Parses "4,4" into extents; throws Error(usage) naming the bad item on bad text.
  static Shape parse_extents(std::string_view text);

  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  /// Tile extents for every axis (the leading axes are whole).
  [[nodiscard]] const Shape& tile_extents() const noexcept { return tile_; }
  /// Number of tiles along each axis.
  [[nodiscard]] const Shape& grid_shape() const noexcept { return grid_; }
  [[nodiscard]] std::int64_t tile_count() const noexcept { return count_; }
  [[nodiscard]] int ndim() const noexcept { return static_cast<int>(shape_.size()); }

  /// The box of tile `index` (0 <= index < tile_count()).
  [[nodiscard]] Box box(std::int64_t index) const noexcept;

 private:
  Shape shape_;
  Shape tile_;
  Shape grid_;
  std::int64_t count_ = 0;
};

}  // namespace tilepool
