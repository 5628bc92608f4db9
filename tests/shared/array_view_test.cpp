#include "tilepool/shared/array_view.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shared/error_expectations.hpp"
#include "shared/value_pattern.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/array_segment.hpp"

namespace tilepool {
namespace {

using testing::pattern_value;
using testing::throws_error;
using testing::unique_name;

// The flat C-order offset of `index` in an array of `shape`, computed by hand.
std::int64_t flat_offset(const Shape& shape, const Shape& index) {
  std::int64_t flat = 0;
  for (std::size_t a = 0; a < shape.size(); ++a) flat = flat * shape[a] + index[a];
  return flat;
}

// The N-D index (in the whole array) of element (r, c) of plane p of a tile view of `box`.
Shape index_in_plane(const Box& box, std::int64_t p, std::int64_t r, std::int64_t c) {
  Shape index(static_cast<std::size_t>(box.ndim));
  const int lead = box.ndim > 2 ? box.ndim - 2 : 0;
  for (int a = lead - 1; a >= 0; --a) {
    const auto i = static_cast<std::size_t>(a);
    index[i] = box.lo[i] + p % box.extent(a);
    p /= box.extent(a);
  }
  if (box.ndim >= 2) {
    const auto i = static_cast<std::size_t>(box.ndim - 2);
    index[i] = box.lo[i] + r;
  }
  if (box.ndim >= 1) {
    const auto i = static_cast<std::size_t>(box.ndim - 1);
    index[i] = box.lo[i] + c;
  }
  return index;
}

template <class T>
void fill_pattern(const ArrayView<T>& view) {
  for (std::int64_t i = 0; i < view.size(); ++i) view.data()[i] = pattern_value<T>(i);
}

// Checks every element of every plane of the tile of `box` against the pattern at its index.
template <class T>
::testing::AssertionResult tile_planes_match(const ArrayView<T>& view, const Box& box) {
  const TileView<T> tile = view.tile(box);
  std::int64_t seen = 0;
  for (std::int64_t p = 0; p < tile.plane_count(); ++p) {
    const auto plane = tile.plane(p);
    if (plane.rows() != tile.rows() || plane.cols() != tile.cols()) {
      return ::testing::AssertionFailure() << "plane " << p << " is " << plane.rows() << "x" << plane.cols();
    }
    for (std::int64_t r = 0; r < tile.rows(); ++r) {
      for (std::int64_t c = 0; c < tile.cols(); ++c) {
        const Shape index = index_in_plane(box, p, r, c);
        const auto expected = pattern_value<std::remove_const_t<T>>(flat_offset(view.shape(), index));
        if (plane(r, c) != expected) {
          return ::testing::AssertionFailure() << "plane " << p << " (" << r << ", " << c << ") = " << +plane(r, c)
                                               << ", expected element " << format_shape(index) << " = " << +expected;
        }
        ++seen;
      }
    }
  }
  if (seen != box.element_count()) {
    return ::testing::AssertionFailure() << "planes hold " << seen << " elements, the box " << box.element_count();
  }
  return ::testing::AssertionSuccess();
}

// ---- typed: every dtype's tiles map the right elements --------------------------------------

template <class T>
class ArrayViewTypedTest : public ::testing::Test {};

using ElementTypes = ::testing::Types<bool, std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t,
                                      std::uint32_t, std::int64_t, std::uint64_t, float, double>;
TYPED_TEST_SUITE(ArrayViewTypedTest, ElementTypes);

TYPED_TEST(ArrayViewTypedTest, PlanesOfEveryTileOfA3DArrayMapTheRightElements) {
  using T = TypeParam;
  ArraySegment seg = ArraySegment::create(unique_name(), dtype_of_v<T>, Shape{5, 7, 9});
  const ArrayView<T> view = seg.view<T>();
  fill_pattern(view);
  const TileGrid grid = TileGrid::make(view.shape(), Shape{3, 4});

  for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
    EXPECT_TRUE(tile_planes_match(view, grid.box(t))) << "tile " << t;
  }
}

TYPED_TEST(ArrayViewTypedTest, PlanesOfEveryTileOfA4DArrayMapTheRightElements) {
  using T = TypeParam;
  ArraySegment seg = ArraySegment::create(unique_name(), dtype_of_v<T>, Shape{3, 4, 5, 6});
  const ArrayView<T> view = seg.view<T>();
  fill_pattern(view);
  // Tiling the last three axes makes boxes that are partial along a leading plane axis.
  const TileGrid grid = TileGrid::make(view.shape(), Shape{3, 2, 4});

  for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
    EXPECT_TRUE(tile_planes_match(view, grid.box(t))) << "tile " << t;
  }
}

TYPED_TEST(ArrayViewTypedTest, ReadOnlyViewMapsTheSameElements) {
  using T = TypeParam;
  ArraySegment seg = ArraySegment::create(unique_name(), dtype_of_v<T>, Shape{4, 6});
  fill_pattern(seg.view<T>());
  const ArrayView<const T> view = seg.view<const T>();

  EXPECT_TRUE(tile_planes_match(view, TileGrid::make(view.shape(), Shape{3, 4}).box(3)));
}

// ---- untyped tests --------------------------------------------------------------------------

TEST(ArrayViewTest, StridesAreCOrderInElements) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::float64, Shape{2, 3, 4});

  const auto view = seg.view<double>();

  EXPECT_EQ(view.ndim(), 3);
  EXPECT_EQ(view.size(), 24);
  EXPECT_EQ(view.stride(0), 12);
  EXPECT_EQ(view.stride(1), 4);
  EXPECT_EQ(view.stride(2), 1);
}

TEST(ArrayViewTest, AtAddressesTheElementAtAnIndex) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int32, Shape{3, 4, 5});
  const auto view = seg.view<std::int32_t>();
  fill_pattern(view);

  EXPECT_EQ(view.at(Shape{2, 1, 3}), pattern_value<std::int32_t>(2 * 20 + 1 * 5 + 3));
  view.at(Shape{1, 2, 3}) = 12345;
  EXPECT_EQ(view.data()[1 * 20 + 2 * 5 + 3], 12345);
}

TEST(ArrayViewTest, WritingThroughAPlaneWritesTheSegmentForEveryAttacher) {
  const std::string name = unique_name();
  ArraySegment writer = ArraySegment::create(name, DType::float32, Shape{2, 6, 8});
  const ArraySegment reader = ArraySegment::attach(name);
  const auto view = writer.view<float>();
  const TileGrid grid = TileGrid::make(view.shape(), Shape{4, 4});
  const Box box = grid.box(3);  // rows 4..6, cols 4..8 of both planes

  const TileView<float> tile = view.tile(box);
  for (std::int64_t p = 0; p < tile.plane_count(); ++p) tile.plane(p).setConstant(static_cast<float>(p + 1));

  const auto seen = reader.view<const float>();
  for (std::int64_t i = 0; i < 2; ++i) {
    for (std::int64_t r = 0; r < 6; ++r) {
      for (std::int64_t c = 0; c < 8; ++c) {
        const bool inside = r >= 4 && c >= 4;
        EXPECT_EQ(seen.at(Shape{i, r, c}), inside ? static_cast<float>(i + 1) : 0.0F) << i << "," << r << "," << c;
      }
    }
  }
}

TEST(ArrayViewTest, EigenExpressionsOnPlanesComputeIntoTheOutput) {
  ArraySegment a = ArraySegment::create(unique_name(), DType::float64, Shape{4, 4});
  ArraySegment out = ArraySegment::create(unique_name(), DType::float64, Shape{4, 4});
  const auto in_view = a.view<const double>();
  fill_pattern(a.view<double>());
  const auto out_view = out.view<double>();
  const Box box = TileGrid::make(Shape{4, 4}, Shape{2, 2}).box(1);

  out_view.tile(box).plane(0) = in_view.tile(box).plane(0).array() * 2.0;

  EXPECT_EQ(out_view.at(Shape{0, 2}), 2.0 * pattern_value<double>(2));
  EXPECT_EQ(out_view.at(Shape{1, 3}), 2.0 * pattern_value<double>(7));
  EXPECT_EQ(out_view.at(Shape{0, 0}), 0.0);
}

TEST(ArrayViewTest, TileOfAOneDimensionalArrayIsOneRowPlane) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int16, Shape{10});
  const auto view = seg.view<std::int16_t>();
  fill_pattern(view);
  const Box box = TileGrid::make(view.shape(), Shape{4}).box(1);

  const TileView<std::int16_t> tile = view.tile(box);

  EXPECT_EQ(tile.plane_count(), 1);
  EXPECT_EQ(tile.rows(), 1);
  EXPECT_EQ(tile.cols(), 4);
  for (std::int64_t j = 0; j < 4; ++j) EXPECT_EQ(tile.plane(0)(0, j), pattern_value<std::int16_t>(4 + j)) << j;
}

TEST(ArrayViewTest, TileOfAZeroDimensionalArrayIsOneByOnePlane) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::float64, Shape{});
  const auto view = seg.view<double>();
  view.data()[0] = 4.25;

  const TileView<double> tile = view.tile(view.whole());

  EXPECT_EQ(tile.plane_count(), 1);
  EXPECT_EQ(tile.rows(), 1);
  EXPECT_EQ(tile.cols(), 1);
  EXPECT_EQ(tile.plane(0)(0, 0), 4.25);
  tile.plane(0)(0, 0) = -1.0;
  EXPECT_EQ(view.data()[0], -1.0);
}

TEST(ArrayViewTest, TileOfA4DArrayWithAPartialLeadingBoxMapsTheRightPlanes) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int32, Shape{3, 4, 5, 6});
  const auto view = seg.view<std::int32_t>();
  fill_pattern(view);
  Box box;
  box.ndim = 4;
  box.lo = {1, 2, 1, 0};
  box.hi = {3, 4, 4, 6};

  const TileView<std::int32_t> tile = view.tile(box);

  EXPECT_EQ(tile.plane_count(), 4);
  EXPECT_EQ(tile.rows(), 3);
  EXPECT_EQ(tile.cols(), 6);
  // Plane 3 is leading index (2, 3); its element (1, 5) is [2, 3, 2, 5].
  EXPECT_EQ(tile.plane(3)(1, 5), pattern_value<std::int32_t>(((2 * 4 + 3) * 5 + 2) * 6 + 5));
  EXPECT_TRUE(tile_planes_match(view, box));
}

TEST(ArrayViewTest, WholeIsTheBoxOfTheEntireArray) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::uint8, Shape{3, 4});

  const Box whole = seg.view<std::uint8_t>().whole();

  EXPECT_EQ(whole.ndim, 2);
  EXPECT_EQ(whole.extents(), (Shape{3, 4}));
  EXPECT_EQ(whole.lo[0], 0);
  EXPECT_EQ(whole.lo[1], 0);
}

TEST(ArrayViewTest, MatrixOfA2DArrayIsTheWholeArray) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::float64, Shape{3, 4});
  const auto view = seg.view<double>();
  fill_pattern(view);

  const auto m = view.matrix();

  EXPECT_EQ(m.rows(), 3);
  EXPECT_EQ(m.cols(), 4);
  EXPECT_EQ(m(2, 1), pattern_value<double>(9));
}

TEST(ArrayViewTest, MatrixOfA1DArrayIsOneRow) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::float32, Shape{5});
  const auto view = seg.view<float>();
  fill_pattern(view);

  const auto m = view.matrix();

  EXPECT_EQ(m.rows(), 1);
  EXPECT_EQ(m.cols(), 5);
  EXPECT_EQ(m(0, 4), pattern_value<float>(4));
}

TEST(ArrayViewTest, ReadOnlyConversionViewsTheSameData) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int64, Shape{2, 2});
  const ArrayView<std::int64_t> view = seg.view<std::int64_t>();
  view.data()[3] = 99;

  const ArrayView<const std::int64_t> read_only = view;

  EXPECT_EQ(read_only.data(), view.data());
  EXPECT_EQ(read_only.shape(), view.shape());
  EXPECT_EQ(read_only.at(Shape{1, 1}), 99);
}

TEST(ArrayViewTest, AsFailsWhenTheTypeDoesNotMatch) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::uint16, Shape{2});
  const AnyArray array = seg.array();

  EXPECT_TRUE(throws_error([&] { (void)array.as<std::int16_t>(); }, Errc::bad_input,
                           {"array is uint16, viewed as int16"}));
  EXPECT_NO_THROW((void)array.as<const std::uint16_t>());
}

TEST(ArrayViewTest, ViewKeepsTheMappingAliveAfterTheSegmentHandleAndNameAreGone) {
  const std::string name = unique_name();
  ArrayView<double> view;
  {
    ArraySegment seg = ArraySegment::create(name, DType::float64, Shape{64, 64});
    view = seg.view<double>();
    fill_pattern(view);
  }
  ASSERT_FALSE(segment_exists(name));

  EXPECT_TRUE(tile_planes_match(view, view.whole()));
  view.tile(view.whole()).plane(0).setConstant(7.0);
  EXPECT_EQ(view.at(Shape{63, 63}), 7.0);
}

TEST(ArrayViewTest, AnyArrayKeepsTheMappingAliveAfterTheSegmentHandleIsGone) {
  const std::string name = unique_name();
  AnyArray array;
  {
    ArraySegment seg = ArraySegment::create(name, DType::int32, Shape{1000});
    array = seg.array();
    fill_pattern(seg.view<std::int32_t>());
  }
  ASSERT_FALSE(segment_exists(name));

  const auto view = array.as<const std::int32_t>();

  EXPECT_EQ(view.data()[999], pattern_value<std::int32_t>(999));
  EXPECT_GE(array.owner().use_count(), 2);
}

TEST(ArrayViewTest, CopiesOfAViewShareTheMapping) {
  const std::string name = unique_name();
  std::weak_ptr<const void> mapping;
  {
    ArrayView<float> copy;
    {
      ArraySegment seg = ArraySegment::create(name, DType::float32, Shape{8});
      const ArrayView<float> view = seg.view<float>();
      mapping = seg.array().owner();
      copy = view;
    }
    EXPECT_FALSE(mapping.expired());
    copy.data()[7] = 1.0F;
  }

  EXPECT_TRUE(mapping.expired());
}

}  // namespace
}  // namespace tilepool
