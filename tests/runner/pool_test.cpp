#include "tilepool/runner/pool.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::unique_name;

ArraySegment random_segment(DType dtype, const Shape& shape, unsigned seed) {
  ArraySegment s = ArraySegment::create(unique_name("in"), dtype, shape);
  std::mt19937 gen(seed);
  visit_dtype(dtype, [&]<class T>(std::type_identity<T>) {
    auto* p = reinterpret_cast<T*>(s.data());
    for (std::int64_t i = 0; i < s.array().size(); ++i) p[i] = static_cast<T>(gen() % 100);
  });
  return s;
}

class PoolTest : public ::testing::TestWithParam<Mode> {};

TEST_P(PoolTest, SeedWorkloadMatchesInlineReference) {
  const Shape shape{365, 16, 16};
  ArraySegment a = random_segment(DType::float64, shape, 1);
  ArraySegment b = random_segment(DType::float64, shape, 2);
  ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, shape);
  ArraySegment ref = ArraySegment::create(unique_name("ref"), DType::float64, shape);
  JobRequest job{"add", {JobArray::of(a), JobArray::of(b)}, JobArray::of(out), {4, 4}, {}};
  JobRequest ref_job = job;
  ref_job.output = JobArray::of(ref);
  run_inline(ref_job);

  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam()}, &job);
  const JobStats stats = pool.run(job);

  EXPECT_EQ(stats.tiles, 16);
  EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.data_bytes()), 0);
}

TEST_P(PoolTest, ManyJobsRunOnOnePool) {
  ArraySegment a = random_segment(DType::int32, {64, 64}, 3);
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam()});
  for (int i = 0; i < 20; ++i) {
    ArraySegment out = ArraySegment::create(unique_name("out"), DType::int64, {});
    JobRequest job{"sum", {JobArray::of(a)}, JobArray::of(out), {8, 8}, {}};
    pool.run(job);
    std::int64_t expected = 0;
    for (std::int64_t k = 0; k < 64 * 64; ++k) expected += reinterpret_cast<const std::int32_t*>(a.data())[k];
    EXPECT_EQ(*reinterpret_cast<const std::int64_t*>(out.data()), expected);
  }
}

TEST_P(PoolTest, KernelErrorNamesKernelAndTile) {
  ArraySegment a = random_segment(DType::float64, {8, 8}, 4);
  ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, {8, 8});
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam()});
  JobRequest job{"add_scalar", {JobArray::of(a)}, JobArray::of(out), {4, 4}, {}};
  try {
    pool.run(job);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add_scalar"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("value"), std::string::npos) << e.what();
  }
}

class PoolGrowthTest : public ::testing::TestWithParam<Mode> {};

TEST_P(PoolGrowthTest, WarmPoolGrowsItsControlBlockForABiggerJob) {
  ArraySegment a = random_segment(DType::float64, {256, 256}, 5);
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam(), .tile_capacity = 16});
  for (const Shape& tile : {Shape{64, 64}, Shape{4, 4}, Shape{64, 64}}) {  // 16 tiles, then 4096, then 16 again
    ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, {256, 256});
    ArraySegment ref = ArraySegment::create(unique_name("ref"), DType::float64, {256, 256});
    JobRequest job{"negate", {JobArray::of(a)}, JobArray::of(out), tile, {}};
    JobRequest ref_job = job;
    ref_job.output = JobArray::of(ref);
    run_inline(ref_job);
    const JobStats stats = pool.run(job);
    EXPECT_EQ(stats.tiles, (256 / tile[0]) * (256 / tile[1]));
    EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.data_bytes()), 0);
  }
}

TEST(PoolCapacityTest, ThousandAndTwentyFourThreadWorkersRunAJob) {
  ArraySegment a = random_segment(DType::float64, {64, 64}, 6);
  ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, {64, 64});
  ArraySegment ref = ArraySegment::create(unique_name("ref"), DType::float64, {64, 64});
  JobRequest job{"negate", {JobArray::of(a)}, JobArray::of(out), {2, 2}, {}};
  JobRequest ref_job = job;
  ref_job.output = JobArray::of(ref);
  run_inline(ref_job);
  Pool pool = Pool::start(PoolOptions{.workers = 1024, .mode = Mode::threads});
  EXPECT_EQ(pool.worker_count(), 1024);
  EXPECT_EQ(pool.run(job).tiles, 1024);
  EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.data_bytes()), 0);
}

// A pool of many workers for a job of few tiles starts one worker per tile; a bigger job on
// the warm pool starts more, up to PoolOptions::workers, and runs correctly on them.
TEST_P(PoolGrowthTest, PoolStartsNoMoreWorkersThanItsJobHasTilesAndMoreForABiggerJob) {
  ArraySegment a = random_segment(DType::float64, {16, 16}, 7);
  ArraySegment first_out = ArraySegment::create(unique_name("out"), DType::float64, {16, 16});
  JobRequest first{"negate", {JobArray::of(a)}, JobArray::of(first_out), {8, 8}, {}};  // 4 tiles
  Pool pool = Pool::start(PoolOptions{.workers = 12, .mode = GetParam()}, &first);
  pool.run(first);
  EXPECT_EQ(pool.worker_count(), 4);
  for (const auto& [tile, workers] : std::vector<std::pair<Shape, int>>{{{4, 4}, 12}, {{8, 8}, GetParam() == Mode::fork ? 4 : 12}}) {
    ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, {16, 16});
    ArraySegment ref = ArraySegment::create(unique_name("ref"), DType::float64, {16, 16});
    JobRequest job{"negate", {JobArray::of(a)}, JobArray::of(out), tile, {}};
    JobRequest ref_job = job;
    ref_job.output = JobArray::of(ref);
    run_inline(ref_job);
    pool.run(job);
    // fork mode forks per job: as many children as this job's tiles; the others keep theirs.
    EXPECT_EQ(pool.worker_count(), workers) << "tile " << tile[0];
    EXPECT_EQ(std::memcmp(out.data(), ref.data(), out.data_bytes()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, PoolGrowthTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                         [](const auto& param_info) { return std::string(mode_name(param_info.param)); });
INSTANTIATE_TEST_SUITE_P(Modes, PoolTest, ::testing::Values(Mode::share, Mode::threads),
                         [](const auto& param_info) { return std::string(mode_name(param_info.param)); });

}  // namespace
}  // namespace tilepool
