// A worker that dies before it has claimed a tile, again and again, must fail the job: the
// README promises that a job never hangs. Here a kernel of this program's own crashes the
// worker in `bind` (as a segfault, an abort or the OOM killer would), which happens before the
// worker claims its first tile, so no tile is ever blamed for the death.
//
// Fork mode fails the job ("every fork-mode worker died") and copy mode fails it ("killed its
// worker 4 times": its workers bind while a tile is in flight). Share mode replaces the dead
// worker, the new one enters the same job and dies the same way, and so on without end: the
// supervisor counts deaths per tile only (Supervisor::worker_died returns early for tile -1),
// so the job never ends. The pool runs in a child process with a deadline, so the test fails
// instead of hanging.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

const KernelDef kCrashOnBind{
    .name = "test_crash_on_bind",
    .summary = "a kernel whose bind kills its worker (a crash before the first tile)",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) { return inputs[0]; },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray>, const AnyArray&, const Params&) -> std::unique_ptr<BoundKernel> {
      ::raise(SIGKILL);  // only ever called in a worker process in the modes tested here
      return nullptr;
    },
};

const bool kRegistered = (register_kernel(kCrashOnBind), true);

std::filesystem::path this_program() { return std::filesystem::read_symlink("/proc/self/exe"); }

// Removes the job segments a killed child left ("tilepool-<pid>-...").
void remove_segments_of(pid_t pid) {
  const std::string prefix = "tilepool-" + std::to_string(pid) + "-";
  for (const auto& name : testing::entries_with_prefix(prefix)) {
    std::error_code ec;
    std::filesystem::remove(std::filesystem::path("/dev/shm") / name, ec);
  }
}

class WorkerDyingBeforeItsFirstTileTest : public ::testing::TestWithParam<Mode> {};

TEST_P(WorkerDyingBeforeItsFirstTileTest, FailsTheJobInsteadOfRespawningForever) {
  ASSERT_TRUE(kRegistered);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int status = 3;
    try {
      Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam(), .worker_executable = this_program()});
      const ArrayPlacement placement = pool.placement();
      JobRequest job{"test_crash_on_bind", {placement.make(DType::float64, {16, 16}, ArrayRole::input)}, {}, {8, 8}, {}};
      job.output = placement.make(DType::float64, {16, 16}, ArrayRole::output);
      (void)pool.run(job);
      status = 1;  // every worker crashes: the job cannot succeed
    } catch (const Error& e) {
      status = e.code() == Errc::job_failed ? 0 : 2;
    } catch (...) {
      status = 2;
    }
    ::_exit(status);
  }
  constexpr auto kDeadline = 15s;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  int status = 0;
  pid_t r = 0;
  while ((r = ::waitpid(child, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  if (r == 0) {
    ::kill(child, SIGKILL);  // its workers die with it (PR_SET_PDEATHSIG)
    ::waitpid(child, &status, 0);
    std::this_thread::sleep_for(200ms);
    remove_segments_of(child);
    FAIL() << mode_name(GetParam()) << " mode: the job neither failed nor finished within "
           << std::chrono::duration_cast<std::chrono::seconds>(kDeadline).count()
           << " s; its workers keep dying before their first tile and are respawned without end";
  }
  remove_segments_of(child);
  ASSERT_TRUE(WIFEXITED(status)) << "child ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "expected Error(job_failed) from Pool::run (1: it succeeded, 2: another error)";
}

std::string mode_label(const ::testing::TestParamInfo<Mode>& param) { return std::string(mode_name(param.param)); }

INSTANTIATE_TEST_SUITE_P(Modes, WorkerDyingBeforeItsFirstTileTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy), mode_label);

}  // namespace
}  // namespace tilepool
