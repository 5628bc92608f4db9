// tilepool and real numpy (/usr/bin/python3) reading and writing each other's arrays: .npy
// files, segments numpy maps with np.load(mmap_mode='r+'), and segments numpy saved itself.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shared/error_expectations.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::TempDir;
using testing::throws_error;
using testing::unique_name;

// Removes a segment numpy made (tilepool did not create it, so no handle owns it).
class RemoveSegmentOnExit {
 public:
  explicit RemoveSegmentOnExit(std::string name) : name_(std::move(name)) {}
  RemoveSegmentOnExit(const RemoveSegmentOnExit&) = delete;
  RemoveSegmentOnExit& operator=(const RemoveSegmentOnExit&) = delete;
  ~RemoveSegmentOnExit() {
    try {
      (void)remove_segment(name_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the leak check reports what is left
    }
  }

 private:
  std::string name_;
};

// A Python string literal for a path or name (ours never contain quotes or backslashes).
std::string py(const std::filesystem::path& p) { return fmt::format("\"{}\"", p.string()); }

class NumpyInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto r = testing::run_python("import numpy");
    ASSERT_EQ(r.status, 0) << "these tests need numpy for /usr/bin/python3 (python3-numpy): " << r.output;
  }

  // Runs a Python program (numpy imported as np); success if it exits 0.
  static ::testing::AssertionResult python(const std::string& code) {
    const auto r = testing::run_python("import numpy as np\n" + code);
    if (r.status == 0) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "python exited " << r.status << ":\n" << code << "\n--- output:\n" << r.output;
  }

  // Loads `path` with ArraySegment::load_npy and checks dtype, shape and every element.
  template <class T>
  static void expect_loads_as(const std::filesystem::path& path, const Shape& shape,
                              const std::function<T(std::int64_t)>& expected) {
    const ArraySegment seg = ArraySegment::load_npy(path, unique_name());
    ASSERT_EQ(seg.dtype(), dtype_of_v<T>);
    ASSERT_EQ(seg.shape(), shape);
    const auto view = seg.view<const T>();
    for (std::int64_t i = 0; i < view.size(); ++i) {
      ASSERT_EQ(view.data()[i], expected(i)) << "element " << i;
    }
  }

  TempDir dir_;
};

// ---- numpy writes a .npy file, tilepool loads it --------------------------------------------

TEST_F(NumpyInteropTest, LoadNpyReadsABoolArrayNumpySaved) {
  const auto path = dir_ / "b.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.arange(12).reshape(3, 4) % 3 == 0)"));

  expect_loads_as<bool>(path, Shape{3, 4}, [](std::int64_t i) { return i % 3 == 0; });
}

TEST_F(NumpyInteropTest, LoadNpyReadsAThreeDimensionalUint16ArrayNumpySaved) {
  const auto path = dir_ / "u16.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.arange(24, dtype=np.uint16).reshape(2, 3, 4) * np.uint16(3001))"));

  expect_loads_as<std::uint16_t>(path, Shape{2, 3, 4},
                                 [](std::int64_t i) { return static_cast<std::uint16_t>(i * 3001); });
}

TEST_F(NumpyInteropTest, LoadNpyReadsAOneDimensionalFloat32ArrayNumpySaved) {
  const auto path = dir_ / "f32.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.arange(10, dtype=np.float32) * np.float32(0.5) - np.float32(2))"));

  expect_loads_as<float>(path, Shape{10}, [](std::int64_t i) { return static_cast<float>(i) * 0.5F - 2.0F; });
}

TEST_F(NumpyInteropTest, LoadNpyConvertsABigEndianFloat64ArrayNumpySaved) {
  const auto path = dir_ / "be.npy";
  ASSERT_TRUE(python("a = (np.arange(12).reshape(3, 4) * 1.25 - 4).astype('>f8')\n"
                     "assert a.dtype.str == '>f8'\n"
                     "np.save(" + py(path) + ", a)"));

  expect_loads_as<double>(path, Shape{3, 4}, [](std::int64_t i) { return static_cast<double>(i) * 1.25 - 4; });
}

TEST_F(NumpyInteropTest, LoadNpyConvertsABigEndianInt32ArrayNumpySaved) {
  const auto path = dir_ / "be.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", (np.arange(24).reshape(2, 3, 4) * 100003 - 7).astype('>i4'))"));

  expect_loads_as<std::int32_t>(path, Shape{2, 3, 4},
                                [](std::int64_t i) { return static_cast<std::int32_t>(i * 100003 - 7); });
}

TEST_F(NumpyInteropTest, LoadNpyReadsExtremeIntegerValuesNumpySaved) {
  const auto i8 = dir_ / "i8.npy";
  const auto u64 = dir_ / "u64.npy";
  const auto i64 = dir_ / "i64.npy";
  ASSERT_TRUE(python("np.save(" + py(i8) + ", np.arange(-128, 128, dtype=np.int8))\n"
                     "np.save(" + py(u64) + ", np.array([0, 2**63, 2**64 - 1], dtype=np.uint64))\n"
                     "np.save(" + py(i64) + ", np.array([-2**63, -1, 2**63 - 1], dtype=np.int64))"));

  expect_loads_as<std::int8_t>(i8, Shape{256}, [](std::int64_t i) { return static_cast<std::int8_t>(i - 128); });
  const std::vector<std::uint64_t> u = {0, std::uint64_t{1} << 63, ~std::uint64_t{0}};
  expect_loads_as<std::uint64_t>(u64, Shape{3}, [&](std::int64_t i) { return u[static_cast<std::size_t>(i)]; });
  const std::vector<std::int64_t> s = {INT64_MIN, -1, INT64_MAX};
  expect_loads_as<std::int64_t>(i64, Shape{3}, [&](std::int64_t i) { return s[static_cast<std::size_t>(i)]; });
}

TEST_F(NumpyInteropTest, LoadNpyReadsAZeroDArrayNumpySaved) {
  const auto path = dir_ / "scalar.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.float64(3.5))"));

  expect_loads_as<double>(path, Shape{}, [](std::int64_t) { return 3.5; });
}

TEST_F(NumpyInteropTest, LoadNpyReadsAnEmptyArrayNumpySaved) {
  const auto path = dir_ / "empty.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.zeros((0, 3), dtype=np.int32))"));

  expect_loads_as<std::int32_t>(path, Shape{0, 3}, [](std::int64_t) { return 0; });
}

TEST_F(NumpyInteropTest, LoadNpyReadsVersionTwoAndThreeFilesNumpyWrote) {
  for (const int major : {2, 3}) {
    const auto path = dir_ / fmt::format("v{}.npy", major);
    ASSERT_TRUE(python("with open(" + py(path) + ", 'wb') as f:\n"
                       "    np.lib.format.write_array(f, np.arange(6, dtype=np.int16).reshape(2, 3), version=(" +
                       std::to_string(major) + ", 0))"));

    expect_loads_as<std::int16_t>(path, Shape{2, 3}, [](std::int64_t i) { return static_cast<std::int16_t>(i); });
  }
}

TEST_F(NumpyInteropTest, LoadNpyRefusesAFortranOrderedFileNumpySaved) {
  const auto path = dir_ / "f.npy";
  ASSERT_TRUE(python("np.save(" + py(path) + ", np.asfortranarray(np.arange(12.0).reshape(3, 4)))"));
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(path, name); }, Errc::bad_input,
                           {path.string(), "Fortran-order arrays are not supported"}));
  EXPECT_FALSE(segment_exists(name));
}

TEST_F(NumpyInteropTest, LoadNpyRefusesStructuredAndComplexArraysNumpySaved) {
  const auto structured = dir_ / "s.npy";
  const auto complex = dir_ / "c.npy";
  ASSERT_TRUE(python("np.save(" + py(structured) + ", np.zeros(3, dtype=[('a', '<f8'), ('b', '<i4')]))\n"
                     "np.save(" + py(complex) + ", np.zeros(3, dtype=np.complex128))"));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(structured, unique_name()); }, Errc::bad_input,
                           {"structured dtypes are not supported"}));
  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(complex, unique_name()); }, Errc::bad_input,
                           {"unsupported dtype '<c16'"}));
}

// ---- tilepool writes, numpy reads -----------------------------------------------------------

TEST_F(NumpyInteropTest, NumpyMemmapSeesTheValuesTilepoolWrote) {
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::int32, Shape{3, 4});
  const auto view = seg.view<std::int32_t>();
  for (std::int64_t i = 0; i < view.size(); ++i) view.data()[i] = static_cast<std::int32_t>(i * 7 - 20);

  EXPECT_TRUE(python("a = np.load(\"/dev/shm/" + name + "\", mmap_mode='r+')\n"
                     "assert isinstance(a, np.memmap), type(a)\n"
                     "assert a.dtype == np.int32 and a.shape == (3, 4), (a.dtype, a.shape)\n"
                     "assert a.flags.c_contiguous\n"
                     "assert (a == np.arange(12).reshape(3, 4) * 7 - 20).all(), a\n"
                     "assert a.offset % 64 == 0, a.offset\n"));
}

TEST_F(NumpyInteropTest, NumpyMemmapSeesAThreeDimensionalFloat64ArrayTilepoolWrote) {
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::float64, Shape{4, 5, 6});
  const auto view = seg.view<double>();
  for (std::int64_t i = 0; i < view.size(); ++i) view.data()[i] = static_cast<double>(i) * 0.5 - 3;

  EXPECT_TRUE(python("a = np.load(\"/dev/shm/" + name + "\", mmap_mode='r+')\n"
                     "assert a.dtype == np.float64 and a.shape == (4, 5, 6), (a.dtype, a.shape)\n"
                     "assert (a == np.arange(120).reshape(4, 5, 6) * 0.5 - 3).all(), a\n"));
}

TEST_F(NumpyInteropTest, NumpyWritesThroughTheMemmapAreSeenByTilepool) {
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::float32, Shape{4, 4});

  ASSERT_TRUE(python("a = np.load(\"/dev/shm/" + name + "\", mmap_mode='r+')\n"
                     "a[1, 2] = 42.5\n"
                     "a[3, :] = np.arange(4)\n"
                     "a.flush()\n"));

  const auto view = seg.view<const float>();
  for (std::int64_t r = 0; r < 4; ++r) {
    for (std::int64_t c = 0; c < 4; ++c) {
      const float expected = r == 3 ? static_cast<float>(c) : (r == 1 && c == 2 ? 42.5F : 0.0F);
      EXPECT_EQ(view.at(Shape{r, c}), expected) << r << "," << c;
    }
  }
}

TEST_F(NumpyInteropTest, NumpyMemmapSeesAFileBackedSegment) {
  TempDir store;
  const Backing backing = Backing::file(store.path());
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::uint8, Shape{16}, backing);
  const auto view = seg.view<std::uint8_t>();
  for (std::int64_t i = 0; i < 16; ++i) view.data()[i] = static_cast<std::uint8_t>(i * 16);

  EXPECT_TRUE(python("a = np.load(" + py(backing.path_of(name)) + ", mmap_mode='r+')\n"
                     "assert a.dtype == np.uint8 and (a == np.arange(16, dtype=np.uint8) * 16).all(), a\n"));
}

TEST_F(NumpyInteropTest, NumpyLoadsWhatSaveNpyWrote) {
  const auto path = dir_ / "out.npy";
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int64, Shape{2, 3, 4});
  const auto view = seg.view<std::int64_t>();
  for (std::int64_t i = 0; i < view.size(); ++i) view.data()[i] = i * i - 100;

  seg.save_npy(path);

  EXPECT_TRUE(python("a = np.load(" + py(path) + ")\n"
                     "assert a.dtype == np.int64 and a.shape == (2, 3, 4), (a.dtype, a.shape)\n"
                     "assert (a.ravel() == np.arange(24) ** 2 - 100).all(), a\n"));
}

// ---- numpy makes a segment, tilepool attaches it by name ------------------------------------

TEST_F(NumpyInteropTest, AttachSeesASegmentNumpySavedThroughAFileObject) {
  const std::string name = unique_name();
  const RemoveSegmentOnExit cleanup(name);
  ASSERT_TRUE(python("with open(\"/dev/shm/" + name + "\", 'wb') as f:\n"
                     "    np.save(f, np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 4)\n"));

  const ArraySegment seg = ArraySegment::attach(name);

  EXPECT_FALSE(seg.segment().owns_name());
  ASSERT_EQ(seg.dtype(), DType::float32);
  ASSERT_EQ(seg.shape(), (Shape{2, 3, 4}));
  const auto view = seg.view<const float>();
  for (std::int64_t i = 0; i < 24; ++i) EXPECT_EQ(view.data()[i], static_cast<float>(i) / 4) << i;
}

TEST_F(NumpyInteropTest, AttachSeesASegmentNumpySavedByPath) {
  // np.save appends ".npy" unless the name already ends with it.
  const std::string name = unique_name("array.npy");
  const RemoveSegmentOnExit cleanup(name);
  ASSERT_TRUE(python("np.save(\"/dev/shm/" + name + "\", np.arange(10, dtype=np.int16) - 5)"));

  const ArraySegment seg = ArraySegment::attach(name);

  ASSERT_EQ(seg.dtype(), DType::int16);
  ASSERT_EQ(seg.shape(), Shape{10});
  const auto view = seg.view<const std::int16_t>();
  for (std::int64_t i = 0; i < 10; ++i) EXPECT_EQ(view.data()[i], i - 5) << i;
}

TEST_F(NumpyInteropTest, TilepoolWritesToASegmentNumpySavedAreSeenByNumpy) {
  const std::string name = unique_name();
  const RemoveSegmentOnExit cleanup(name);
  ASSERT_TRUE(python("with open(\"/dev/shm/" + name + "\", 'wb') as f:\n"
                     "    np.save(f, np.zeros((3, 3), dtype=np.bool_))\n"));
  {
    const ArraySegment seg = ArraySegment::attach(name);
    seg.view<bool>().at(Shape{1, 1}) = true;
  }

  EXPECT_TRUE(python("a = np.load(\"/dev/shm/" + name + "\")\n"
                     "assert a.dtype == np.bool_ and a.sum() == 1 and a[1, 1], a\n"));
}

TEST_F(NumpyInteropTest, AttachRefusesAFortranOrderedSegmentNumpySaved) {
  const std::string name = unique_name();
  const RemoveSegmentOnExit cleanup(name);
  ASSERT_TRUE(python("with open(\"/dev/shm/" + name + "\", 'wb') as f:\n"
                     "    np.save(f, np.asfortranarray(np.arange(12.0).reshape(3, 4)))\n"));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {name, "Fortran-order arrays are not supported"}));
  EXPECT_TRUE(segment_exists(name));  // refusing to attach never removes
}

TEST_F(NumpyInteropTest, AttachRefusesABigEndianSegmentNumpySaved) {
  const std::string name = unique_name();
  const RemoveSegmentOnExit cleanup(name);
  ASSERT_TRUE(python("with open(\"/dev/shm/" + name + "\", 'wb') as f:\n"
                     "    np.save(f, np.arange(4).astype('>f8'))\n"));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input, {name, "big-endian"}));
}

}  // namespace
}  // namespace tilepool
