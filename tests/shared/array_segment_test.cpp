#include "tilepool/shared/array_segment.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "shared/child_process.hpp"
#include "shared/error_expectations.hpp"
#include "shared/small_tmpfs.hpp"
#include "shared/value_pattern.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::kAllDTypes;
using testing::pattern_value;
using testing::TempDir;
using testing::throws_error;
using testing::unique_name;

template <class T>
void fill_pattern(const ArrayView<T>& view) {
  for (std::int64_t i = 0; i < view.size(); ++i) view.data()[i] = pattern_value<T>(i);
}

template <class T>
::testing::AssertionResult holds_pattern(const ArrayView<const T>& view) {
  for (std::int64_t i = 0; i < view.size(); ++i) {
    if (view.data()[i] != pattern_value<T>(i)) {
      return ::testing::AssertionFailure() << "element " << i << " is " << +view.data()[i] << ", expected "
                                           << +pattern_value<T>(i);
    }
  }
  return ::testing::AssertionSuccess();
}

// A raw segment whose bytes are exactly `bytes` (to hand ArraySegment::attach bad data).
Segment raw_segment(const std::string& name, const std::string& bytes) {
  Segment seg = Segment::create(name, bytes.size());
  std::memcpy(seg.data(), bytes.data(), bytes.size());
  return seg;
}

// A version 1.0 header with `dict` padded (with spaces and a final newline) to `total` bytes.
std::string padded_header(const std::string& dict, std::size_t total) {
  TILEPOOL_CHECK(10 + dict.size() + 1 <= total);
  std::string s = "\x93NUMPY\x01";
  s += '\0';
  const std::size_t len = total - 10;
  s += static_cast<char>(len & 0xFF);
  s += static_cast<char>(len >> 8);
  s += dict;
  s.append(total - s.size() - 1, ' ');
  s += '\n';
  return s;
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// ---- create / attach ------------------------------------------------------------------------

TEST(ArraySegmentTest, CreateThenAttachRoundTripsEveryDType) {
  for (const DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    const std::string name = unique_name(dtype_name(dt));
    visit_dtype(dt, [&](auto type) {
      using T = typename decltype(type)::type;
      ArraySegment created = ArraySegment::create(name, dt, Shape{3, 4, 5});
      fill_pattern(created.view<T>());

      const ArraySegment attached = ArraySegment::attach(name);

      EXPECT_EQ(attached.dtype(), dt);
      EXPECT_EQ(attached.shape(), (Shape{3, 4, 5}));
      EXPECT_EQ(attached.data_bytes(), 60 * sizeof(T));
      EXPECT_TRUE(holds_pattern<T>(attached.view<const T>()));
    });
  }
}

TEST(ArraySegmentTest, CreateZeroFillsTheData) {
  const std::string name = unique_name();

  const ArraySegment seg = ArraySegment::create(name, DType::int64, Shape{100});

  const auto view = seg.view<const std::int64_t>();
  for (std::int64_t i = 0; i < view.size(); ++i) ASSERT_EQ(view.data()[i], 0) << i;
}

TEST(ArraySegmentTest, CreateWritesAnAlignedNpyHeaderAtTheStartOfTheSegment) {
  const std::string name = unique_name();

  const ArraySegment seg = ArraySegment::create(name, DType::float32, Shape{7, 9});

  const npy::Header h = npy::parse_header(std::span<const std::byte>(seg.segment().data(), seg.segment().size()));
  EXPECT_EQ(h.dtype, DType::float32);
  EXPECT_EQ(h.shape, (Shape{7, 9}));
  EXPECT_FALSE(h.big_endian);
  EXPECT_EQ(h.data_offset % npy::kDataAlignment, 0u);
  EXPECT_EQ(seg.header().data_offset, h.data_offset);
  EXPECT_EQ(seg.data(), seg.segment().data() + h.data_offset);
  EXPECT_EQ(seg.segment().size(), h.data_offset + 7 * 9 * 4);
}

TEST(ArraySegmentTest, CreateHandlesAZeroDArray) {
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::float64, Shape{});
  seg.view<double>().data()[0] = 2.5;

  const ArraySegment attached = ArraySegment::attach(name);

  EXPECT_EQ(attached.shape(), Shape{});
  EXPECT_EQ(attached.data_bytes(), 8u);
  EXPECT_EQ(attached.view<const double>().data()[0], 2.5);
}

TEST(ArraySegmentTest, CreateHandlesAnArrayWithNoElements) {
  const std::string name = unique_name();
  const ArraySegment seg = ArraySegment::create(name, DType::int32, Shape{0, 4});

  const ArraySegment attached = ArraySegment::attach(name);

  EXPECT_EQ(attached.shape(), (Shape{0, 4}));
  EXPECT_EQ(attached.data_bytes(), 0u);
  EXPECT_EQ(attached.view<const std::int32_t>().size(), 0);
}

TEST(ArraySegmentTest, CreateRejectsAShapeWhoseByteSizeOverflows) {
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::float64, Shape{std::int64_t{1} << 62, 4}); },
                           Errc::usage, {"is too large"}));
  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, CreateRejectsANegativeExtent) {
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::uint8, Shape{3, -1}); }, Errc::usage));
  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, CreateRejectsMoreThanThirtyTwoAxes) {
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::uint8, Shape(33, 1)); }, Errc::usage,
                           {"33 axes"}));
  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, CreateFailsWithNoSpaceWhenTheArrayDoesNotFitAndLeavesNothing) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::float64, Shape{512, 512}, Backing::file(fs.path())); },
                           Errc::no_space, {name, "not enough space"}));
  EXPECT_TRUE(std::filesystem::is_empty(fs.path()));
}

TEST(ArraySegmentTest, CreateFailsWhenTheNameExists) {
  const std::string name = unique_name();
  const ArraySegment first = ArraySegment::create(name, DType::uint8, Shape{4});

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::uint8, Shape{4}); }, Errc::exists, {name}));
  EXPECT_TRUE(segment_exists(name));
}

TEST(ArraySegmentTest, DestructorRemovesTheCreatorsSegment) {
  const std::string name = unique_name();

  { const ArraySegment seg = ArraySegment::create(name, DType::uint8, Shape{4}); }

  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, AttacherNeverRemovesTheSegment) {
  const std::string name = unique_name();
  const ArraySegment owner = ArraySegment::create(name, DType::uint8, Shape{4});

  { const ArraySegment attached = ArraySegment::attach(name); }

  EXPECT_TRUE(segment_exists(name));
}

TEST(ArraySegmentTest, AttachFailsWhenTheNameIsAbsent) {
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input, {name, "does not exist"}));
}

TEST(ArraySegmentTest, AttachFailsWhenTheSegmentIsNotNpy) {
  const std::string name = unique_name();
  const Segment raw = raw_segment(name, std::string(128, 'z'));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {"segment '" + name + "'", "not an NPY file"}));
}

TEST(ArraySegmentTest, AttachFailsWhenTheSegmentIsShorterThanItsHeader) {
  const std::string name = unique_name();
  const Segment raw = raw_segment(name, npy::make_header(DType::float64, Shape{100}).substr(0, 40));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {"segment '" + name + "'", "truncated"}));
}

TEST(ArraySegmentTest, AttachFailsWhenTheSegmentIsTruncated) {
  const std::string name = unique_name();
  const Segment raw = raw_segment(name, npy::make_header(DType::float64, Shape{100}) + std::string(80, '\0'));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {"segment '" + name + "'", "truncated: header says 800 bytes of data, segment has 80"}));
}

TEST(ArraySegmentTest, AttachRefusesABigEndianSegment) {
  const std::string name = unique_name();
  const Segment raw =
      raw_segment(name, padded_header("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", 128) +
                            std::string(16, '\0'));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {"segment '" + name + "'", "big-endian"}));
}

TEST(ArraySegmentTest, AttachRefusesADataOffsetNotAlignedToTheElementSize) {
  const std::string name = unique_name();
  const Segment raw =
      raw_segment(name, padded_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 70) +
                            std::string(16, '\0'));

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name); }, Errc::bad_input,
                           {"segment '" + name + "'", "data offset 70 is not aligned"}));
}

TEST(ArraySegmentTest, AttachAcceptsAnUnpaddedHeaderWhoseOffsetSuitsTheElementSize) {
  // Older numpy aligned the data to 16 bytes, not 64: any offset that is a multiple of the item size is fine.
  const std::string name = unique_name();
  const std::array<std::int16_t, 3> values = {-1, 2, 300};
  std::string data(sizeof(values), '\0');
  std::memcpy(data.data(), values.data(), sizeof(values));
  const Segment raw =
      raw_segment(name, padded_header("{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }", 80) + data);

  const ArraySegment seg = ArraySegment::attach(name);

  EXPECT_EQ(seg.header().data_offset, 80u);
  const auto view = seg.view<const std::int16_t>();
  EXPECT_EQ(std::vector<std::int16_t>(view.data(), view.data() + 3), std::vector<std::int16_t>(values.begin(), values.end()));
}

TEST(ArraySegmentTest, AttachWithFileBackingSeesTheCreatorsArray) {
  TempDir dir;
  const std::string name = unique_name();
  const Backing backing = Backing::file(dir.path());
  ArraySegment created = ArraySegment::create(name, DType::uint16, Shape{4, 4}, backing);
  fill_pattern(created.view<std::uint16_t>());

  const ArraySegment attached = ArraySegment::attach(name, backing);

  EXPECT_TRUE(holds_pattern<std::uint16_t>(attached.view<const std::uint16_t>()));
  EXPECT_TRUE(std::filesystem::exists(dir / name));
}

// ---- load_npy / save_npy --------------------------------------------------------------------

TEST(ArraySegmentTest, LoadNpyReadsAFileOfEveryDTypeIntoANewSegment) {
  TempDir dir;
  for (const DType dt : kAllDTypes) {
    SCOPED_TRACE(dtype_name(dt));
    visit_dtype(dt, [&](auto type) {
      using T = typename decltype(type)::type;
      std::array<T, 24> values{};  // not std::vector: vector<bool> has no contiguous storage
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = pattern_value<T>(static_cast<std::int64_t>(i));
      const auto path = dir / (std::string(dtype_name(dt)) + ".npy");
      npy::write_file(path, dt, Shape{2, 3, 4}, std::as_bytes(std::span(values)));
      const std::string name = unique_name();

      const ArraySegment seg = ArraySegment::load_npy(path, name);

      EXPECT_EQ(seg.dtype(), dt);
      EXPECT_EQ(seg.shape(), (Shape{2, 3, 4}));
      EXPECT_TRUE(seg.segment().owns_name());
      EXPECT_TRUE(holds_pattern<T>(seg.view<const T>()));
    });
  }
}

TEST(ArraySegmentTest, LoadNpyConvertsABigEndianFileToALittleEndianSegment) {
  TempDir dir;
  const auto path = dir / "be.npy";
  const std::array<std::int32_t, 4> values = {1, -2, 0x01020304, 1 << 30};
  std::string data;
  for (const auto v : values) {
    const auto raw = std::bit_cast<std::array<char, 4>>(v);
    data.append(raw.rbegin(), raw.rend());
  }
  write_bytes(path, padded_header("{'descr': '>i4', 'fortran_order': False, 'shape': (4,), }", 128) + data);
  const std::string name = unique_name();

  const ArraySegment seg = ArraySegment::load_npy(path, name);

  EXPECT_FALSE(seg.header().big_endian);
  const auto view = seg.view<const std::int32_t>();
  EXPECT_EQ(std::vector<std::int32_t>(view.data(), view.data() + 4), std::vector<std::int32_t>(values.begin(), values.end()));
  EXPECT_EQ(ArraySegment::attach(name).dtype(), DType::int32);  // the segment itself says '<i4'
}

TEST(ArraySegmentTest, LoadNpyLeavesNoSegmentWhenTheFileIsTruncated) {
  TempDir dir;
  const auto path = dir / "short.npy";
  write_bytes(path, npy::make_header(DType::float64, Shape{10}) + std::string(8, '\0'));
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(path, name); }, Errc::bad_input,
                           {path.string(), "truncated: header says 80 bytes of data, file has 8"}));
  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, LoadNpyLeavesNoSegmentWhenTheFileIsMissing) {
  TempDir dir;
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(dir / "missing.npy", name); }, Errc::bad_input,
                           {"missing.npy", "no such file"}));
  EXPECT_FALSE(segment_exists(name));
}

TEST(ArraySegmentTest, LoadNpyFailsWhenTheNameIsTakenAndLeavesTheExistingSegment) {
  TempDir dir;
  const auto path = dir / "a.npy";
  const std::array<std::uint8_t, 2> values = {7, 8};
  npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)));
  const std::string name = unique_name();
  const ArraySegment existing = ArraySegment::create(name, DType::int16, Shape{5});

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(path, name); }, Errc::exists, {name}));
  EXPECT_EQ(ArraySegment::attach(name).dtype(), DType::int16);
}

TEST(ArraySegmentTest, LoadNpyCanUseAFileBacking) {
  TempDir files;
  TempDir store;
  const auto path = files / "a.npy";
  const std::array<double, 3> values = {1.0, 2.0, 3.0};
  npy::write_file(path, DType::float64, Shape{3}, std::as_bytes(std::span(values)));
  const std::string name = unique_name();

  const ArraySegment seg = ArraySegment::load_npy(path, name, Backing::file(store.path()));

  EXPECT_TRUE(std::filesystem::exists(store / name));
  EXPECT_EQ(seg.view<const double>().data()[2], 3.0);
}

// load_npy fills a segment inside the kernel (copy_file_range/sendfile) without reserving it
// first: a store that fills up mid-copy is still Error(no_space), and nothing is left.
TEST(ArraySegmentTest, LoadNpyIntoAStoreThatFillsUpMidCopyIsNoSpaceAndLeavesNothing) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  TempDir files;
  const auto path = files / "big.npy";
  std::vector<double> values(512 * 512, 1.5);  // 2 MiB
  npy::write_file(path, DType::float64, Shape{512, 512}, std::as_bytes(std::span(values)));
  const std::string name = unique_name();
  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(path, name, Backing::file(fs.path())); }, Errc::no_space,
                           {name, "not enough space"}));
  EXPECT_TRUE(std::filesystem::is_empty(fs.path()));
}

// A store already full: the header, written through the mapping, faulted (SIGBUS: `tilepool
// put` died with exit 135 and left the segment) before the copy could report no space.
TEST(ArraySegmentTest, LoadNpyIntoAStoreThatIsAlreadyFullIsNoSpaceAndLeavesNothing) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  {
    std::ofstream fill(fs.path() / "fill", std::ios::binary);
    const std::vector<char> block(4096, 'x');
    while (fill.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }
  TempDir files;
  const auto path = files / "small.npy";
  std::vector<double> values(64 * 64, 1.5);
  npy::write_file(path, DType::float64, Shape{64, 64}, std::as_bytes(std::span(values)));
  const std::string name = unique_name();
  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::load_npy(path, name, Backing::file(fs.path())); }, Errc::no_space,
                           {name, "not enough space"}));
  EXPECT_FALSE(std::filesystem::exists(fs.path() / name));
}

TEST(ArraySegmentTest, LoadNpyCopiesEveryByteOfALargeFile) {
  TempDir files;
  const auto path = files / "ramp.npy";
  std::vector<std::int32_t> values(3'000'001);  // not a whole number of pages
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::int32_t>(i * 7);
  npy::write_file(path, DType::int32, Shape{static_cast<std::int64_t>(values.size())}, std::as_bytes(std::span(values)));
  const ArraySegment seg = ArraySegment::load_npy(path, unique_name());
  const auto* got = reinterpret_cast<const std::int32_t*>(seg.data());
  EXPECT_TRUE(std::equal(values.begin(), values.end(), got));
}

TEST(ArraySegmentTest, SaveNpyWritesAFileThatReadsBack) {
  TempDir dir;
  const auto path = dir / "out.npy";
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::float32, Shape{3, 5});
  fill_pattern(seg.view<float>());

  seg.save_npy(path);

  const npy::Header h = npy::read_file_header(path);
  EXPECT_EQ(h.dtype, DType::float32);
  EXPECT_EQ(h.shape, (Shape{3, 5}));
  std::vector<float> got(15);
  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], pattern_value<float>(static_cast<std::int64_t>(i))) << i;
}

TEST(ArraySegmentTest, SaveNpyRefusesToOverwriteWithoutTheFlag) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "keep me");
  const ArraySegment seg = ArraySegment::create(unique_name(), DType::uint8, Shape{2});

  EXPECT_TRUE(throws_error([&] { seg.save_npy(path); }, Errc::exists, {path.string()}));
  EXPECT_EQ(std::filesystem::file_size(path), 7u);
}

TEST(ArraySegmentTest, SaveNpyOverwritesWithTheFlag) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "replace me");
  const ArraySegment seg = ArraySegment::create(unique_name(), DType::uint8, Shape{2});

  seg.save_npy(path, /*overwrite=*/true);

  EXPECT_EQ(npy::read_file_header(path).shape, Shape{2});
}

// ---- shapes at the edges, read-only inputs, identity, publishing ----------------------------

TEST(ArraySegmentTest, CreateRejectsAShapeNumpyRefusesWhereverItsZeroExtentIs) {
  constexpr std::int64_t k62 = std::int64_t{1} << 62;
  for (const Shape& shape : {Shape{k62, 0, k62}, Shape{k62, k62, 0}}) {
    const std::string name = unique_name();

    EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create(name, DType::uint8, shape); }, Errc::usage,
                             {format_shape(shape), "is too large"}));
    EXPECT_FALSE(segment_exists(name));
  }
}

TEST(ArraySegmentTest, AZeroDArrayRoundTripsThroughAnNpyFileAndNumpy) {
  TempDir dir;
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int64, Shape{});
  seg.view<std::int64_t>().data()[0] = -123456789;

  seg.save_npy(dir / "sum.npy");
  const ArraySegment loaded = ArraySegment::load_npy(dir / "sum.npy", unique_name());

  EXPECT_EQ(loaded.shape(), Shape{});
  EXPECT_EQ(loaded.view<const std::int64_t>().data()[0], -123456789);
  const auto numpy = testing::run_python("import numpy as np\nfor p in ['" + (dir / "sum.npy").string() + "', '" +
                                         seg.segment().backing().path_of(seg.name()).string() +
                                         "']:\n  a = np.load(p, mmap_mode='r')\n"
                                         "  assert a.shape == () and a.dtype == np.int64 and a == -123456789, (p, a)");
  EXPECT_EQ(numpy.status, 0) << numpy.output;
}

TEST(ArraySegmentTest, AZeroDArrayAttachesReadOnly) {
  const std::string name = unique_name();
  ArraySegment seg = ArraySegment::create(name, DType::float64, Shape{});
  seg.view<double>().data()[0] = 6.25;

  const ArraySegment reader = ArraySegment::attach(name, {}, MapOptions{.read_only = true});

  EXPECT_EQ(reader.shape(), Shape{});
  EXPECT_EQ(reader.view<const double>().data()[0], 6.25);
  EXPECT_TRUE(reader.segment().read_only());
}

TEST(ArraySegmentTest, ReadOnlyAttachOpensAnArrayThisUserMayOnlyRead) {
  const std::string name = unique_name();
  ArraySegment owner = ArraySegment::create(name, DType::int32, Shape{3});
  owner.view<std::int32_t>().data()[2] = 77;
  ASSERT_EQ(::chmod(owner.segment().backing().path_of(name).c_str(), 0400), 0);

  const int status = testing::run_in_child([&] {
    if (!testing::drop_permission_override()) return 10;
    try {
      (void)ArraySegment::attach(name);
      return 11;  // read-write attach of a 0400 segment succeeded: the test proves nothing
    } catch (const Error&) {
    }
    const ArraySegment reader = ArraySegment::attach(name, {}, MapOptions{.read_only = true});
    return reader.view<const std::int32_t>().data()[2] == 77 ? 0 : 12;
  });

  EXPECT_TRUE(testing::exited_cleanly(status));
}

TEST(ArraySegmentTest, AttachWithTheExpectedIdentityRefusesAnArrayPutAgainUnderTheName) {
  const std::string name = unique_name();
  ArraySegment first = ArraySegment::create(name, DType::float64, Shape{4, 4});
  const SegmentIdentity pinned = first.segment().identity();
  first.segment().remove_name();
  const ArraySegment second = ArraySegment::create(name, DType::float64, Shape{4, 4});

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::attach(name, {}, MapOptions{.expected_identity = pinned}); },
                           Errc::bad_input, {"segment '" + name + "' was replaced or resized since the job started"}));
  EXPECT_NO_THROW((void)ArraySegment::attach(name, {}, MapOptions{.expected_identity = second.segment().identity()}));
}

TEST(ArraySegmentTest, APublishedArrayAttachesUnderItsNewName) {
  const std::string to = unique_name("out");
  ArraySegment job = ArraySegment::create(unique_name("job"), DType::uint16, Shape{2, 3});
  job.view<std::uint16_t>().data()[5] = 65535;

  job.segment().publish(to, /*replace=*/false);

  const ArraySegment published = ArraySegment::attach(to);
  EXPECT_EQ(published.shape(), (Shape{2, 3}));
  EXPECT_EQ(published.view<const std::uint16_t>().data()[5], 65535);
  EXPECT_EQ(job.name(), to);
  EXPECT_TRUE(remove_segment(to));
}

// ---- views ----------------------------------------------------------------------------------

TEST(ArraySegmentTest, ViewFailsWhenTheTypeDoesNotMatchTheDType) {
  const ArraySegment seg = ArraySegment::create(unique_name(), DType::float64, Shape{4});

  EXPECT_TRUE(throws_error([&] { (void)seg.view<std::int32_t>(); }, Errc::bad_input,
                           {"array is float64, viewed as int32"}));
  EXPECT_TRUE(throws_error([&] { (void)seg.view<float>(); }, Errc::bad_input, {"viewed as float32"}));
  EXPECT_TRUE(throws_error([&] { (void)seg.view<const std::uint64_t>(); }, Errc::bad_input, {"viewed as uint64"}));
}

TEST(ArraySegmentTest, ViewOfTheMatchingConstTypeSeesTheData) {
  ArraySegment seg = ArraySegment::create(unique_name(), DType::int8, Shape{3});
  seg.view<std::int8_t>().data()[1] = -7;

  const auto view = seg.view<const std::int8_t>();

  EXPECT_EQ(view.data()[1], -7);
  EXPECT_EQ(static_cast<const void*>(view.data()), static_cast<const void*>(seg.data()));
}

TEST(ArraySegmentTest, ArrayDescribesTheSegmentsData) {
  const ArraySegment seg = ArraySegment::create(unique_name(), DType::uint32, Shape{6, 7});

  const AnyArray array = seg.array();

  EXPECT_EQ(array.dtype(), DType::uint32);
  EXPECT_EQ(array.shape(), (Shape{6, 7}));
  EXPECT_EQ(array.ndim(), 2);
  EXPECT_EQ(array.size(), 42);
  EXPECT_EQ(array.bytes(), 168u);
  EXPECT_EQ(array.data(), seg.data());
  EXPECT_EQ(array.owner(), seg.segment().mapping());
}

}  // namespace
}  // namespace tilepool
