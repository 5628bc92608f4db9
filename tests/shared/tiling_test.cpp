#include "tilepool/shared/tiling.hpp"

#include <gtest/gtest.h>

#include "support/test_support.hpp"

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "shared/error_expectations.hpp"

namespace tilepool {
namespace {

using testing::error_message;
using testing::throws_error;

using testing::make_box;

std::string describe(const Box& b) {
  std::string s = "[";
  for (int a = 0; a < b.ndim; ++a) {
    const auto i = static_cast<std::size_t>(a);
    s += (a > 0 ? ", " : "") + std::to_string(b.lo[i]) + ":" + std::to_string(b.hi[i]);
  }
  return s + "]";
}

// Calls f(index) for every N-D index of `shape`, in C order.
template <class F>
void for_each_index(const Shape& shape, F&& f) {
  const auto n = element_count(shape).value_or(0);
  Shape index(shape.size(), 0);
  for (std::int64_t k = 0; k < n; ++k) {
    f(index);
    for (std::size_t a = shape.size(); a-- > 0;) {
      if (++index[a] < shape[a]) break;
      index[a] = 0;
    }
  }
}

struct GridCase {
  Shape shape;
  Shape tile;
};

// Shapes and tiles covering 1-D to 4-D, divisible or not, one tile, one-element tiles,
// tiles larger than the array and fewer tile extents than axes.
const std::vector<GridCase> kGridCases = {
    {{10}, {3}},          {{10}, {10}},         {{10}, {1}},       {{10}, {25}},      {{5, 7}, {2, 3}},
    {{8, 8}, {4, 4}},     {{8, 8}, {8, 8}},     {{3, 4}, {1, 1}},  {{3, 5}, {100, 100}}, {{6, 4}, {2}},
    {{4, 5, 6}, {2, 2, 2}}, {{7, 5, 6}, {4, 4}}, {{2, 3, 4, 5}, {2, 3, 2}}, {{3, 1, 9}, {5, 4}}, {{1}, {1}},
};

std::string describe(const GridCase& c) { return format_shape(c.shape) + " tile " + format_shape(c.tile); }

// ---- make -----------------------------------------------------------------------------------

TEST(TilingTest, DesignExampleGivesSixteenTilesOfWholeLeadingAxis) {
  const TileGrid grid = TileGrid::make(Shape{365, 16, 16}, Shape{4, 4});

  EXPECT_EQ(grid.tile_count(), 16);
  EXPECT_EQ(grid.grid_shape(), (Shape{1, 4, 4}));
  EXPECT_EQ(grid.tile_extents(), (Shape{365, 4, 4}));
  for (std::int64_t i = 0; i < grid.tile_count(); ++i) {
    EXPECT_EQ(grid.box(i).extents(), (Shape{365, 4, 4})) << i;
  }
}

TEST(TilingTest, MakeKeepsTheShapeAndAxisCount) {
  const TileGrid grid = TileGrid::make(Shape{9, 8, 7}, Shape{3});

  EXPECT_EQ(grid.shape(), (Shape{9, 8, 7}));
  EXPECT_EQ(grid.ndim(), 3);
}

TEST(TilingTest, OneDimensionalEdgeTileIsPartial) {
  const TileGrid grid = TileGrid::make(Shape{10}, Shape{3});

  ASSERT_EQ(grid.tile_count(), 4);
  EXPECT_EQ(grid.box(0), make_box({{0, 3}}));
  EXPECT_EQ(grid.box(1), make_box({{3, 6}}));
  EXPECT_EQ(grid.box(2), make_box({{6, 9}}));
  EXPECT_EQ(grid.box(3), make_box({{9, 10}}));
}

TEST(TilingTest, TwoDimensionalGridThatDoesNotDivideHasPartialEdgeTiles) {
  const TileGrid grid = TileGrid::make(Shape{5, 7}, Shape{2, 3});

  EXPECT_EQ(grid.grid_shape(), (Shape{3, 3}));
  ASSERT_EQ(grid.tile_count(), 9);
  EXPECT_EQ(grid.box(0), make_box({{0, 2}, {0, 3}}));
  EXPECT_EQ(grid.box(2), make_box({{0, 2}, {6, 7}}));
  EXPECT_EQ(grid.box(6), make_box({{4, 5}, {0, 3}}));
  EXPECT_EQ(grid.box(8), make_box({{4, 5}, {6, 7}}));
}

TEST(TilingTest, ThreeDimensionalGridTilesEveryGivenAxis) {
  const TileGrid grid = TileGrid::make(Shape{4, 5, 6}, Shape{2, 2, 2});

  EXPECT_EQ(grid.grid_shape(), (Shape{2, 3, 3}));
  EXPECT_EQ(grid.tile_count(), 18);
  EXPECT_EQ(grid.box(17), make_box({{2, 4}, {4, 5}, {4, 6}}));
}

TEST(TilingTest, TileEqualToTheArrayGivesOneTile) {
  const TileGrid grid = TileGrid::make(Shape{8, 8}, Shape{8, 8});

  ASSERT_EQ(grid.tile_count(), 1);
  EXPECT_EQ(grid.box(0), make_box({{0, 8}, {0, 8}}));
}

TEST(TilingTest, TileLargerThanTheArrayGivesOneTileOfTheWholeArray) {
  const TileGrid grid = TileGrid::make(Shape{3, 5}, Shape{100, 100});

  ASSERT_EQ(grid.tile_count(), 1);
  EXPECT_EQ(grid.box(0), make_box({{0, 3}, {0, 5}}));
  EXPECT_EQ(grid.tile_extents(), (Shape{3, 5}));
}

TEST(TilingTest, TilesOfOneElementGiveOneTilePerElement) {
  const TileGrid grid = TileGrid::make(Shape{3, 4}, Shape{1, 1});

  ASSERT_EQ(grid.tile_count(), 12);
  EXPECT_EQ(grid.box(5), make_box({{1, 2}, {1, 2}}));
}

TEST(TilingTest, FewerTileExtentsThanAxesKeepTheLeadingAxesWhole) {
  const TileGrid grid = TileGrid::make(Shape{6, 4}, Shape{2});

  EXPECT_EQ(grid.grid_shape(), (Shape{1, 2}));
  EXPECT_EQ(grid.box(1), make_box({{0, 6}, {2, 4}}));
}

TEST(TilingTest, ZeroDimensionalArrayIsOneTileOfOneElement) {
  const TileGrid grid = TileGrid::make(Shape{}, Shape{});

  ASSERT_EQ(grid.tile_count(), 1);
  EXPECT_EQ(grid.box(0).ndim, 0);
  EXPECT_EQ(grid.box(0).element_count(), 1);
}

TEST(TilingTest, ArrayWithAZeroLengthAxisHasNoTiles) {
  EXPECT_EQ(TileGrid::make(Shape{0, 4}, Shape{2, 2}).tile_count(), 0);
  EXPECT_EQ(TileGrid::make(Shape{4, 0}, Shape{2}).tile_count(), 0);
  EXPECT_EQ(TileGrid::make(Shape{0}, Shape{3}).tile_count(), 0);
}

TEST(TilingTest, MakeRejectsAZeroTileExtent) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{4, 4}, Shape{0, 2}); }, Errc::usage,
                           {"tile extent 0 on axis 0", "must be positive"}));
}

TEST(TilingTest, MakeRejectsANegativeTileExtent) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{4, 4}, Shape{2, -3}); }, Errc::usage,
                           {"tile extent -3 on axis 1", "must be positive"}));
}

TEST(TilingTest, MakeRejectsMoreTileExtentsThanAxes) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{4, 4}, Shape{2, 2, 2}); }, Errc::usage,
                           {"tile (2, 2, 2) has 3 extents", "(4, 4)", "only 2 axes"}));
}

TEST(TilingTest, MakeRejectsAnEmptyTileForAnArrayWithAxes) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{4, 4}, Shape{}); }, Errc::usage, {"at least one extent"}));
}

TEST(TilingTest, MakeRejectsAnExtentOnALeadingTiledAxisByItsArrayAxis) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{5, 4, 4}, Shape{0, 2}); }, Errc::usage,
                           {"tile extent 0 on axis 1"}));
}

TEST(TilingTest, MakeRejectsMoreThanThirtyTwoAxes) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape(33, 1), Shape{1}); }, Errc::usage, {"33 axes"}));
}

TEST(TilingTest, MakeRejectsANegativeArrayExtent) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{4, -5}, Shape{2}); }, Errc::usage, {"(4, -5)"}));
}

TEST(TilingTest, MakeRejectsAShapeWhoseElementCountOverflows) {
  constexpr std::int64_t kBig = std::int64_t{1} << 40;

  EXPECT_TRUE(throws_error([] { (void)TileGrid::make(Shape{kBig, kBig}, Shape{1, 1}); }, Errc::usage));
}

// ---- box ------------------------------------------------------------------------------------

TEST(TilingTest, BoxesCoverEveryElementExactlyOnce) {
  for (const auto& c : kGridCases) {
    SCOPED_TRACE(describe(c));
    const TileGrid grid = TileGrid::make(c.shape, c.tile);
    const Shape strides = [&] {
      Shape s(c.shape.size(), 1);
      for (std::size_t a = c.shape.size(); a-- > 1;) s[a - 1] = s[a] * c.shape[a];
      return s;
    }();
    std::vector<int> hits(static_cast<std::size_t>(*element_count(c.shape)), 0);

    for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
      const Box b = grid.box(t);
      ASSERT_EQ(b.ndim, grid.ndim());
      for_each_index(b.extents(), [&](const Shape& rel) {
        std::int64_t flat = 0;
        for (std::size_t a = 0; a < rel.size(); ++a) flat += (b.lo[a] + rel[a]) * strides[a];
        ++hits[static_cast<std::size_t>(flat)];
      });
    }

    for (std::size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i], 1) << "element " << i;
  }
}

TEST(TilingTest, BoxesStayInsideTheArrayAndAreNeverEmpty) {
  for (const auto& c : kGridCases) {
    SCOPED_TRACE(describe(c));
    const TileGrid grid = TileGrid::make(c.shape, c.tile);
    for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
      const Box b = grid.box(t);
      for (int a = 0; a < b.ndim; ++a) {
        const auto i = static_cast<std::size_t>(a);
        EXPECT_GE(b.lo[i], 0) << describe(b);
        EXPECT_LE(b.hi[i], c.shape[i]) << describe(b);
        EXPECT_GT(b.extent(a), 0) << describe(b);
        EXPECT_LE(b.extent(a), grid.tile_extents()[i]) << describe(b);
      }
    }
  }
}

TEST(TilingTest, TilesAreNumberedInCOrderOverTheGrid) {
  for (const auto& c : kGridCases) {
    SCOPED_TRACE(describe(c));
    const TileGrid grid = TileGrid::make(c.shape, c.tile);
    std::int64_t expected = 0;

    for_each_index(grid.grid_shape(), [&](const Shape& coords) {
      const Box b = grid.box(expected);
      for (std::size_t a = 0; a < coords.size(); ++a) {
        EXPECT_EQ(b.lo[a], coords[a] * grid.tile_extents()[a]) << "tile " << expected << " axis " << a;
      }
      ++expected;
    });

    EXPECT_EQ(expected, grid.tile_count());
  }
}

// ---- Box ------------------------------------------------------------------------------------

TEST(TilingTest, BoxReportsExtentsAndElementCount) {
  const Box b = make_box({{1, 4}, {0, 2}, {5, 10}});

  EXPECT_EQ(b.extent(0), 3);
  EXPECT_EQ(b.extents(), (Shape{3, 2, 5}));
  EXPECT_EQ(b.element_count(), 30);
}

TEST(TilingTest, BoxesAreEqualOnlyWithTheSameAxesAndBounds) {
  EXPECT_EQ(make_box({{0, 2}, {1, 3}}), make_box({{0, 2}, {1, 3}}));
  EXPECT_NE(make_box({{0, 2}, {1, 3}}), make_box({{0, 2}, {1, 4}}));
  EXPECT_NE(make_box({{0, 2}}), make_box({{0, 2}, {0, 1}}));
}

// ---- parse_extents --------------------------------------------------------------------------

TEST(TilingTest, ParseExtentsReadsCommaSeparatedPositiveIntegers) {
  EXPECT_EQ(TileGrid::parse_extents("4,4"), (Shape{4, 4}));
  EXPECT_EQ(TileGrid::parse_extents("365"), (Shape{365}));
  EXPECT_EQ(TileGrid::parse_extents("1,2,3"), (Shape{1, 2, 3}));
  EXPECT_EQ(TileGrid::parse_extents("9223372036854775807"), (Shape{std::numeric_limits<std::int64_t>::max()}));
}

TEST(TilingTest, ParseExtentsRejectsBadText) {
  for (const std::string_view text : {"", ",", "4,", ",4", "4,,4", "a", "4x4", "0", "4,0", "-1", "4, 4", " 4", "4 ",
                                      "+4", "4.5", "0x10", "-99999999999999999999"}) {
    EXPECT_TRUE(throws_error([&] { (void)TileGrid::parse_extents(text); }, Errc::usage, {"positive integers"}))
        << "'" << text << "'";
  }
  // Past int64: out of range, not "not positive".
  EXPECT_TRUE(throws_error([] { (void)TileGrid::parse_extents("4,99999999999999999999"); }, Errc::usage,
                           {"tile extent 99999999999999999999 is out of range: expected at most 9223372036854775807"}));
}

TEST(TilingTest, ParseExtentsNamesTheBadItem) {
  EXPECT_TRUE(throws_error([] { (void)TileGrid::parse_extents("4,x"); }, Errc::usage, {"'x' is not a positive tile extent"}));
  EXPECT_TRUE(throws_error([] { (void)TileGrid::parse_extents("0,8"); }, Errc::usage, {"'0' is not a positive tile extent"}));
  EXPECT_TRUE(throws_error([] { (void)TileGrid::parse_extents("4,,4"); }, Errc::usage, {"item 2 of the tile extents is empty"}));
  EXPECT_TRUE(throws_error([] { (void)TileGrid::parse_extents(""); }, Errc::usage, {"no tile extents"}));
}

TEST(TilingTest, ErrorsDescribeTheTileWithoutNamingACommandLineFlag) {
  for (const std::string& message :
       {error_message([] { (void)TileGrid::parse_extents("4,x"); }), error_message([] { (void)TileGrid::parse_extents(""); }),
        error_message([] { (void)TileGrid::make(Shape{4, 4}, Shape{0, 2}); }),
        error_message([] { (void)TileGrid::make(Shape{4, 4}, Shape{2, 2, 2}); }),
        error_message([] { (void)TileGrid::make(Shape{4, 4}, Shape{}); })}) {
    EXPECT_EQ(message.find("--"), std::string::npos) << message;
    EXPECT_NE(message.find("tile"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace tilepool
