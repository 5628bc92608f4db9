// A node of a distributed job holds only its share of an array: byte ranges, sparse segments
// that reserve just those ranges, and reading just those ranges of an .npy file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/byte_range.hpp"
#include "tilepool/shared/npy.hpp"

namespace tilepool {
namespace {

using testing::TempDir;
using testing::unique_name;

std::uint64_t allocated_bytes(const std::string& name) {
  struct stat st {};
  EXPECT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

TEST(ByteRangeTest, MergeJoinsOverlappingAndTouchingRangesAndDropsEmptyOnes) {
  const std::vector<ByteRange> merged = merge_ranges({{100, 10}, {0, 8}, {8, 4}, {50, 0}, {105, 20}, {200, 1}});

  EXPECT_EQ(merged, (std::vector<ByteRange>{{0, 12}, {100, 25}, {200, 1}}));
  EXPECT_EQ(covered_bytes(merged), 38u);
}

TEST(SparseSegmentTest, CreateSparseHasTheFullSizeButReservesOnlyItsRangesAndTheHeader) {
  const std::size_t mib = 1 << 20;
  // 64 MiB of float64, of which one 1 MiB range is reserved.
  const ArraySegment seg = ArraySegment::create_sparse(unique_name("sparse"), DType::float64, {8, 1024, 1024},
                                                       std::vector{ByteRange{16 * mib, mib}});

  EXPECT_EQ(seg.data_bytes(), 64 * mib);
  EXPECT_GE(allocated_bytes(seg.name()), mib);
  EXPECT_LT(allocated_bytes(seg.name()), 2 * mib);
  // The header is there, and a fresh attach sees the array.
  const ArraySegment again = ArraySegment::attach(seg.name());
  EXPECT_EQ(again.shape(), (Shape{8, 1024, 1024}));
  EXPECT_EQ(again.data()[16 * mib], std::byte{0});
}

TEST(SparseSegmentTest, AttachingASparseSegmentDoesNotFillItsHoles) {
  const std::size_t mib = 1 << 20;
  const ArraySegment seg = ArraySegment::create_sparse(unique_name("sparse"), DType::uint8, {32 * mib}, std::vector{ByteRange{0, mib}});
  const std::uint64_t before = allocated_bytes(seg.name());

  // populate = true is the default: pre-faulting every page would allocate all 32 MiB.
  const ArraySegment attached = ArraySegment::attach(seg.name(), Backing{}, MapOptions{.populate = true, .read_only = true});

  EXPECT_EQ(allocated_bytes(seg.name()), before);
}

TEST(SparseSegmentTest, ReadFileRangesReadsOnlyThoseRangesAndSwapsBigEndianData) {
  TempDir dir;
  const std::filesystem::path path = dir / "be.npy";
  // A big-endian int32 array 0, 1, ..., 99, written by hand (tilepool writes little-endian).
  std::string header = npy::make_header(DType::int32, std::vector<std::int64_t>{100});
  header.replace(header.find("<i4"), 3, ">i4");
  {
    std::ofstream out(path, std::ios::binary);
    out << header;
    for (std::uint32_t i = 0; i < 100; ++i) {
      const unsigned char be[4] = {static_cast<unsigned char>(i >> 24), static_cast<unsigned char>(i >> 16),
                                   static_cast<unsigned char>(i >> 8), static_cast<unsigned char>(i)};
      out.write(reinterpret_cast<const char*>(be), 4);
    }
  }
  const npy::Header h = npy::read_file_header(path);
  std::vector<std::int32_t> dest(100, -1);

  const std::size_t read = npy::read_file_ranges(path, h, std::as_writable_bytes(std::span(dest)),
                                                 std::vector{ByteRange{8, 12}, ByteRange{380, 20}});

  EXPECT_EQ(read, 32u);
  for (int i = 0; i < 100; ++i) {
    const bool in_range = (i >= 2 && i < 5) || i >= 95;
    EXPECT_EQ(dest[static_cast<std::size_t>(i)], in_range ? i : -1) << "element " << i;
  }
}

}  // namespace
}  // namespace tilepool
