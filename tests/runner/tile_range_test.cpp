// JobRequest::tiles: a job over a contiguous range of its grid's tiles (what one node of a
// distributed job runs). In every mode it writes exactly those tiles' output elements, leaves
// the rest of the output as it was, and a reduction returns exactly those tiles' partials.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/copy_protocol.hpp"

namespace tilepool {
namespace {

constexpr std::byte kUntouched{0x5A};

JobArray random_input(const ArrayPlacement& placement, const Shape& shape, unsigned seed) {
  JobArray a = placement.make(DType::float64, shape, ArrayRole::input);
  std::mt19937 gen(seed);
  auto* p = reinterpret_cast<double*>(a.array.data());
  for (std::int64_t i = 0; i < a.array.size(); ++i) p[i] = static_cast<double>(static_cast<int>(gen() % 2001) - 1000) / 7.0;
  return a;
}

// True for the output bytes that tiles [first, first + count) of `grid` write.
std::vector<bool> written_by(const TileGrid& grid, std::int64_t first, std::int64_t count, std::size_t item) {
  std::int64_t elements = 1;
  for (const std::int64_t e : grid.shape()) elements *= e;
  std::vector<bool> mask(static_cast<std::size_t>(elements) * item, false);
  for (std::int64_t t = first; t < first + count; ++t) {
    for_each_run(grid.shape(), item, grid.box(t), [&](std::size_t offset, std::size_t len) {
      std::fill(mask.begin() + static_cast<std::ptrdiff_t>(offset), mask.begin() + static_cast<std::ptrdiff_t>(offset + len), true);
    });
  }
  return mask;
}

class TileRangeTest : public ::testing::TestWithParam<Mode> {};

TEST_P(TileRangeTest, RangeInTheMiddleWritesExactlyThoseTilesAndLeavesTheRestUntouched) {
  const Mode mode = GetParam();
  const ArrayPlacement placement(mode, Backing{});
  const Shape shape{3, 29, 23};  // 4 x 5 tiles of 8 x 5, partial at the bottom and right edges
  JobRequest job{"blur3x3", {random_input(placement, shape, 7)}, {}, {8, 5}, {}};
  job.output = placement.make(DType::float64, shape, ArrayRole::output);
  std::memset(job.output.array.data(), static_cast<int>(kUntouched), job.output.array.bytes());
  job.tiles = TileRange{.first = 6, .count = 7};
  JobRequest ref = job;
  ref.tiles = {};
  ref.output = JobArray{allocate_array(DType::float64, shape, Sharing::private_to_process), ""};
  run_inline(ref);
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = mode});

  const JobStats stats = pool.run(job);

  EXPECT_EQ(stats.tiles, 7);
  const std::vector<bool> mask = written_by(tile_grid(job), 6, 7, sizeof(double));
  const auto* got = job.output.array.data();
  const auto* want = ref.output.array.data();
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < mask.size(); ++i) wrong += got[i] != (mask[i] ? want[i] : kUntouched) ? 1 : 0;
  EXPECT_EQ(wrong, 0u);
}

TEST_P(TileRangeTest, SumOverARangeReturnsThePartialsOfThoseTiles) {
  const Mode mode = GetParam();
  const ArrayPlacement placement(mode, Backing{});
  JobRequest job{"sum", {random_input(placement, {7, 50, 70}, 3)}, {}, {16, 16}, {}};
  job.output = placement.make(DType::float64, {}, ArrayRole::output);
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = mode});
  const JobStats all = pool.run(job);
  ASSERT_EQ(all.partials.size(), 20u);
  job.tiles = TileRange{.first = 5, .count = 9};

  const JobStats range = pool.run(job);

  ASSERT_EQ(range.partials.size(), 9u);
  for (std::size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(std::memcmp(&range.partials[i].f64, &all.partials[5 + i].f64, sizeof(double)), 0) << "tile " << 5 + i;
  }
  const double total = sum_in_tile_order(range.partials).f64;
  EXPECT_EQ(std::memcmp(job.output.array.data(), &total, sizeof total), 0);
}

TEST_P(TileRangeTest, RangeToTheEndRunsEveryTileFromFirst) {
  const Mode mode = GetParam();
  const ArrayPlacement placement(mode, Backing{});
  JobRequest job{"negate", {random_input(placement, {10, 9}, 5)}, {}, {4, 4}, {}};  // 3 x 3 tiles
  job.output = placement.make(DType::float64, {10, 9}, ArrayRole::output);
  job.tiles = TileRange{.first = 4};
  Pool pool = Pool::start(PoolOptions{.workers = 1, .mode = mode});

  EXPECT_EQ(pool.run(job).tiles, 5);
}

TEST_P(TileRangeTest, RangeOutsideTheGridIsAUsageError) {
  const Mode mode = GetParam();
  const ArrayPlacement placement(mode, Backing{});
  JobRequest job{"negate", {random_input(placement, {10, 9}, 5)}, {}, {4, 4}, {}};
  job.output = placement.make(DType::float64, {10, 9}, ArrayRole::output);
  Pool pool = Pool::start(PoolOptions{.workers = 1, .mode = mode});
  for (const TileRange r : {TileRange{.first = 10}, TileRange{.first = -1}, TileRange{.first = 5, .count = 5}}) {
    job.tiles = r;
    try {
      (void)pool.run(job);
      ADD_FAILURE() << "range " << r.first << "+" << r.count << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::usage);
      EXPECT_NE(std::string(e.what()).find("not inside the grid's 9 tiles"), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, TileRangeTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                         [](const auto& param_info) { return std::string(mode_name(param_info.param)); });

}  // namespace
}  // namespace tilepool
