// A kernel that reads outside its own tile, declared through KernelDef::input_region, is right
// in every mode: each tile of `row_total` reads whole rows of its input (the tile's rows, every
// column), and copy mode ships exactly those rows. The kernel is this test program's own,
// registered in-process; share and copy modes start this program itself as their workers
// (serve_as_worker_if_asked, first thing in test_main), so the workers know it too.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"

namespace tilepool {
namespace {

// out[i, j] = the sum of row i of the input: every tile needs its rows whole.
class RowTotal final : public BoundKernel {
 public:
  RowTotal(std::span<const AnyArray> inputs, const AnyArray& output) : in_(inputs[0].as<const double>()), out_(output.as<double>()) {}
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const auto rows = in_.tile(whole_rows(box, in_.shape()));
    auto out = out_.tile(box).plane(0);
    const Eigen::VectorXd totals = rows.plane(0).rowwise().sum();
    out = totals.replicate(1, out.cols());
  }
  static Box whole_rows(const Box& tile, const Shape& shape) {
    Box r = tile;
    r.lo[1] = 0;
    r.hi[1] = shape[1];
    return r;
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
};

const KernelDef kRowTotal{
    .name = "test_row_total",
    .summary = "out[i, j] = sum of row i (a test kernel that reads whole rows)",
    .arity = 1,
    .dtypes = {DType::float64},
    .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec> inputs, const Params&) {
      return RowTotal::whole_rows(tile, inputs[0].shape);
    },
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) {
      if (inputs[0].shape.size() != 2) throw Error(Errc::bad_input, "test_row_total: expected a 2-D input");
      return inputs[0];
    },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params&) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<RowTotal>(inputs, output);
    },
};
// Declares a region beyond the input's last row.
const KernelDef kBeyond = [] {
  KernelDef k = kRowTotal;
  k.name = "test_reads_beyond";
  k.input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec>, const Params&) {
    Box r = tile;
    r.hi[0] += 1000;
    return r;
  };
  return k;
}();

// A map whose output is not shaped like its iteration space: copy mode cannot say where its
// tiles go, so it refuses the job before posting it.
const KernelDef kOddSpace = [] {
  KernelDef k = kRowTotal;
  k.name = "test_odd_space";
  k.input_region = nullptr;
  k.iteration_shape = [](std::span<const ArraySpec> inputs, const ArraySpec&) { return Shape{inputs[0].shape[0], 1}; };
  return k;
}();

const bool kRegistered = (register_kernel(kRowTotal), register_kernel(kBeyond), register_kernel(kOddSpace), true);

std::filesystem::path this_program() { return std::filesystem::read_symlink("/proc/self/exe"); }

class InputRegionTest : public ::testing::TestWithParam<Mode> {};

TEST_P(InputRegionTest, KernelReadingWholeRowsIsRightInEveryMode) {
  ASSERT_TRUE(kRegistered);
  const Mode mode = GetParam();
  constexpr std::int64_t kRows = 37, kCols = 29;
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = mode, .worker_executable = this_program()});
  const ArrayPlacement placement = pool.placement();
  JobRequest job{"test_row_total", {placement.make(DType::float64, {kRows, kCols}, ArrayRole::input)}, {}, {8, 6}, {}};
  auto* in = reinterpret_cast<double*>(job.inputs[0].array.data());
  for (std::int64_t i = 0; i < kRows * kCols; ++i) in[i] = static_cast<double>((i * 13) % 101) - 50;
  job.output = placement.make(DType::float64, {kRows, kCols}, ArrayRole::output);

  const JobStats stats = pool.run(job);

  const auto* out = reinterpret_cast<const double*>(job.output.array.data());
  for (std::int64_t r = 0; r < kRows; ++r) {
    double total = 0;
    for (std::int64_t c = 0; c < kCols; ++c) total += in[r * kCols + c];
    for (std::int64_t c = 0; c < kCols; ++c) ASSERT_EQ(out[r * kCols + c], total) << "row " << r << " col " << c;
  }
  if (mode == Mode::copy) {
    // Each of the 5 x 5 tiles ships its rows whole (8 rows, 5 in the last band) and returns itself.
    const std::uint64_t rows_shipped = 5 * static_cast<std::uint64_t>(kRows);
    EXPECT_EQ(stats.bytes_copied, (rows_shipped * kCols + kRows * kCols) * sizeof(double));
  }
}

TEST(InputRegionCopyTest, RegionOutsideTheInputFailsTheJobNamingTheKernel) {
  ASSERT_TRUE(kRegistered);
  Pool pool = Pool::start(PoolOptions{.workers = 1, .mode = Mode::copy, .worker_executable = this_program()});
  const ArrayPlacement placement = pool.placement();
  JobRequest job{"test_reads_beyond", {placement.make(DType::float64, {8, 8}, ArrayRole::input)}, {}, {4, 4}, {}};
  job.output = placement.make(DType::float64, {8, 8}, ArrayRole::output);

  EXPECT_THROW(
      {
        try {
          pool.run(job);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("test_reads_beyond"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

TEST(InputRegionCopyTest, JobCopyModeCannotPlanFailsAndThePoolRunsTheNextJob) {
  ASSERT_TRUE(kRegistered);
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::copy, .worker_executable = this_program()});
  const ArrayPlacement placement = pool.placement();
  JobRequest odd{"test_odd_space", {placement.make(DType::float64, {6, 4}, ArrayRole::input)}, {}, {2, 1}, {}};
  odd.output = placement.make(DType::float64, {6, 4}, ArrayRole::output);

  EXPECT_THROW(pool.run(odd), Error);

  JobRequest next{"negate", {placement.make(DType::float64, {6, 4}, ArrayRole::input)}, {}, {2, 2}, {}};
  next.output = placement.make(DType::float64, {6, 4}, ArrayRole::output);
  reinterpret_cast<double*>(next.inputs[0].array.data())[5] = 2.5;
  pool.run(next);
  EXPECT_EQ(reinterpret_cast<const double*>(next.output.array.data())[5], -2.5);
}

INSTANTIATE_TEST_SUITE_P(Modes, InputRegionTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                         [](const auto& param_info) { return std::string(mode_name(param_info.param)); });

}  // namespace
}  // namespace tilepool
