#include "tilepool/shared/shape.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace tilepool {
namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

TEST(ShapeTest, ElementCountOfAZeroDShapeIsOne) {
  EXPECT_EQ(element_count(Shape{}), 1);
}

TEST(ShapeTest, ElementCountIsTheProductOfTheExtents) {
  EXPECT_EQ(element_count(Shape{5}), 5);
  EXPECT_EQ(element_count(Shape{365, 16, 16}), 93440);
  EXPECT_EQ(element_count(Shape{kMax}), kMax);
  EXPECT_EQ(element_count(Shape{1, kMax, 1}), kMax);
}

TEST(ShapeTest, ElementCountWithAZeroExtentIsZero) {
  EXPECT_EQ(element_count(Shape{3, 0, 7}), 0);
}

TEST(ShapeTest, ElementCountRefusesNegativeExtents) {
  EXPECT_EQ(element_count(Shape{-1}), std::nullopt);
  EXPECT_EQ(element_count(Shape{3, -2}), std::nullopt);
  EXPECT_EQ(element_count(Shape{0, -1}), std::nullopt);
}

TEST(ShapeTest, ElementCountRefusesProductsThatOverflowInt64) {
  EXPECT_EQ(element_count(Shape{kMax, 2}), std::nullopt);
  EXPECT_EQ(element_count(Shape{std::int64_t{1} << 32, std::int64_t{1} << 31}), std::nullopt);
  EXPECT_EQ(element_count(Shape{3037000500, 3037000500}), std::nullopt);  // just past sqrt(2^63)
  EXPECT_EQ(element_count(Shape{3037000499, 3037000499}), std::int64_t{3037000499} * 3037000499);
}

TEST(ShapeTest, ByteCountIsElementCountTimesItemSize) {
  EXPECT_EQ(byte_count(Shape{3, 4}, 8), 96u);
  EXPECT_EQ(byte_count(Shape{}, 4), 4u);
  EXPECT_EQ(byte_count(Shape{0, 9}, 8), 0u);
  EXPECT_EQ(byte_count(Shape{kMax / 8}, 8), static_cast<std::size_t>(kMax / 8 * 8));
}

TEST(ShapeTest, ByteCountRefusesSizesPastInt64EvenWhenSizeTHoldsThem) {
  // 2^62 elements of 2 bytes is 2^63 bytes: fits size_t, not int64.
  EXPECT_EQ(byte_count(Shape{std::int64_t{1} << 62}, 2), std::nullopt);
  EXPECT_EQ(byte_count(Shape{kMax / 8 + 1}, 8), std::nullopt);
}

TEST(ShapeTest, ByteCountRefusesSizesThatOverflowSizeT) {
  EXPECT_EQ(byte_count(Shape{kMax}, 8), std::nullopt);
  EXPECT_EQ(byte_count(Shape{std::int64_t{1} << 40, std::int64_t{1} << 20}, 16), std::nullopt);
}

TEST(ShapeTest, ByteCountRefusesNegativeExtentsAndOverflowingShapes) {
  EXPECT_EQ(byte_count(Shape{-4}, 1), std::nullopt);
  EXPECT_EQ(byte_count(Shape{kMax, 2}, 1), std::nullopt);
}

TEST(ShapeTest, AZeroExtentDoesNotHideAnOverflowWhereverItIs) {
  // numpy refuses all three ("array is too big"): zero axes are skipped in its size check.
  constexpr std::int64_t k62 = std::int64_t{1} << 62;
  for (const Shape& shape : {Shape{k62, 0, k62}, Shape{k62, k62, 0}, Shape{0, k62, k62}}) {
    EXPECT_EQ(element_count(shape), std::nullopt) << format_shape(shape);
    EXPECT_EQ(byte_count(shape, 1), std::nullopt) << format_shape(shape);
  }
}

TEST(ShapeTest, AZeroSizeArrayIsRefusedWhenItsOtherExtentsTimesTheItemSizeOverflow) {
  constexpr std::int64_t k60 = std::int64_t{1} << 60;
  EXPECT_EQ(byte_count(Shape{k60, 0}, 8), std::nullopt);  // 2^63 bytes if the 0 were 1
  EXPECT_EQ(byte_count(Shape{0, k60}, 8), std::nullopt);
  EXPECT_EQ(byte_count(Shape{k60, 0}, 1), 0u);
  EXPECT_EQ(byte_count(Shape{k60 / 2, 0}, 8), 0u);
  EXPECT_EQ(element_count(Shape{kMax, 0}), 0);
}

TEST(ShapeTest, TheVerdictDoesNotDependOnAxisOrder) {
  const Shape shape{3037000500, 0, 3037000500, 2};
  Shape permuted = shape;
  std::sort(permuted.begin(), permuted.end());
  do {
    EXPECT_EQ(element_count(permuted), std::nullopt) << format_shape(permuted);
    EXPECT_EQ(byte_count(permuted, 1), std::nullopt) << format_shape(permuted);
  } while (std::next_permutation(permuted.begin(), permuted.end()));
}

TEST(ShapeTest, FormatShapePrintsLikeNumpy) {
  EXPECT_EQ(format_shape(Shape{}), "()");
  EXPECT_EQ(format_shape(Shape{5}), "(5,)");
  EXPECT_EQ(format_shape(Shape{0}), "(0,)");
  EXPECT_EQ(format_shape(Shape{365, 16, 16}), "(365, 16, 16)");
  EXPECT_EQ(format_shape(Shape{2, 0}), "(2, 0)");
  EXPECT_EQ(format_shape(Shape{kMax}), "(9223372036854775807,)");
}

}  // namespace
}  // namespace tilepool
