// A worker's error reaches the runner with its kind and errno, not only its words, in every
// mode: a full store met while a worker sets up a job is Errc::no_space (exit 2 from the CLI),
// not a failed job (exit 1).
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <string>

#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

const KernelDef kFullStoreOnBind{
    .name = "test_full_store_on_bind",
    .summary = "a kernel whose bind meets a full store, as attaching a job's arrays can",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) { return inputs[0]; },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray>, const AnyArray&, const Params&) -> std::unique_ptr<BoundKernel> {
      throw Error(Errc::no_space, "test store: not enough space: needs 4096 bytes");
    },
};

const KernelDef kFailedCallOnBind{
    .name = "test_failed_call_on_bind",
    .summary = "a kernel whose bind meets a failed system call, as creating a scratch file can",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) { return inputs[0]; },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray>, const AnyArray&, const Params&) -> std::unique_ptr<BoundKernel> {
      throw system_error("test scratch file", EDQUOT);
    },
};

const bool kRegistered = (register_kernel(kFullStoreOnBind), register_kernel(kFailedCallOnBind), true);

TEST(ControlBlockErrorTest, TheFirstErrorKeepsItsKindAndLaterOnesAreDropped) {
  const std::size_t bytes = ControlBlock::bytes_for(4, 1);
  const AnyArray memory = allocate_array(DType::uint8, Shape{static_cast<std::int64_t>(bytes)}, Sharing::private_to_process);
  ControlBlock& control = *ControlBlock::create_in(memory.data(), bytes, 4, 1);

  control.report_error("store full", Errc::no_space);
  control.report_error("later", Errc::job_failed);

  EXPECT_TRUE(control.job_failed());
  EXPECT_EQ(control.error().code(), Errc::no_space);
  EXPECT_STREQ(control.error().what(), "store full");
}

class ErrorKindTest : public ::testing::TestWithParam<Mode> {
 protected:
  /// The error that running `kernel` over a 16x16 float64 array on a pool of this mode throws.
  static std::optional<Error> error_of(const std::string& kernel) {
    Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam(),
                                        .worker_executable = std::filesystem::read_symlink("/proc/self/exe")});
    const ArrayPlacement placement = pool.placement();
    JobRequest job{kernel, {placement.make(DType::float64, {16, 16}, ArrayRole::input)}, {}, {8, 8}, {}};
    job.output = placement.make(DType::float64, {16, 16}, ArrayRole::output);
    try {
      (void)pool.run(job);
    } catch (const Error& e) {
      return e;
    }
    return std::nullopt;
  }
};

TEST_P(ErrorKindTest, AWorkersFullStoreIsNoSpaceInTheRunner) {
  ASSERT_TRUE(kRegistered);

  const std::optional<Error> e = error_of("test_full_store_on_bind");

  ASSERT_TRUE(e) << "the job succeeded";
  EXPECT_EQ(e->code(), Errc::no_space) << e->what();
  EXPECT_NE(std::string(e->what()).find("not enough space"), std::string::npos) << e->what();
}

TEST_P(ErrorKindTest, AWorkersFailedSystemCallKeepsItsKindAndErrnoInTheRunner) {
  ASSERT_TRUE(kRegistered);

  const std::optional<Error> e = error_of("test_failed_call_on_bind");

  ASSERT_TRUE(e) << "the job succeeded";
  EXPECT_EQ(e->code(), Errc::no_space) << e->what();
  EXPECT_EQ(e->sys_errno(), EDQUOT) << e->what();
  EXPECT_NE(std::string(e->what()).find("test scratch file: "), std::string::npos) << e->what();
}

INSTANTIATE_TEST_SUITE_P(Modes, ErrorKindTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                         [](const ::testing::TestParamInfo<Mode>& param) { return std::string(mode_name(param.param)); });

}  // namespace
}  // namespace tilepool
