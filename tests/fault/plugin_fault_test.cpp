// A plugin kernel that crashes its worker on one tile has the built-ins' guarantee: the tile is
// retried (on a respawned worker), then the job fails naming the kernel, the tile, the pid and
// the signal, in every mode whose workers are processes.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "runner_process.hpp"
#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

class PluginFaultTest : public ::testing::TestWithParam<Mode> {};

TEST_P(PluginFaultTest, PluginKernelThatCrashesOnATileIsRetriedThenFailsTheJobNamingKernelTilePidAndSignal) {
  (void)load_plugin(std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_kernels.so");
  const Mode mode = GetParam();
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = mode, .max_tile_retries = 2, .sample_memory = false});
  const ArrayPlacement placement = pool.placement();
  Params params;
  params.set("row", "5");  // element (5, 9): tile 6 of the 4 x 4 grid of 4 x 4 tiles
  params.set("col", "9");
  JobRequest job{"tp_crash", {placement.make(DType::float64, {16, 16}, ArrayRole::input)}, {}, {4, 4}, params};
  job.output = placement.make(DType::float64, {16, 16}, ArrayRole::output);
  const auto t0 = std::chrono::steady_clock::now();
  try {
    (void)pool.run(job);
    FAIL() << "expected the job to fail";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.code(), Errc::job_failed) << m;
    EXPECT_NE(m.find("tp_crash"), std::string::npos) << m;
    EXPECT_NE(m.find("pid "), std::string::npos) << m;
    if (mode != Mode::copy) {
      EXPECT_NE(m.find("tile 6"), std::string::npos) << m;
      EXPECT_NE(m.find("signal 6"), std::string::npos) << m;
    }
    // Copy mode: a worker computes a batch of tiles and answers in batches, so when it dies the
    // runner blames the first unanswered tile of the batch, not necessarily the one that
    // crashed (a limitation of copy mode's transport, for built-ins as for plugins).
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

INSTANTIATE_TEST_SUITE_P(ProcessModes, PluginFaultTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy),
                         [](const auto& param) { return std::string(mode_name(param.param)); });

// --- a plugin replaced mid-job (issue 17, item 2) -------------------------------------------

// A plugin rebuilt during a job (a new file renamed over its path, as a linker or `make install`
// does, or written into the same file, as `cp` does) while one of the job's workers dies: the
// respawned worker loads the runner's sealed copy, so every tile comes from the build the job
// started with. Before: it loaded the path, and the output mixed builds (exit 0); rewritten in
// place, the file also changed the code under the runner (it died of SIGSEGV).
class PluginReplacedMidJobTest : public ::testing::TestWithParam<std::tuple<const char*, bool>> {};

TEST_P(PluginReplacedMidJobTest, RespawnedWorkerRunsTheBuildTheJobStartedWithNeverTheNewOne) {
  const testing::TempDir dir;
  const auto lib = dir / "libmine.so";
  std::filesystem::copy_file(std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_other.so", lib);  // tp_twice: a + a
  std::filesystem::copy_file(std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_other_v2.so", dir / "v2.so");  // 3 * a
  ASSERT_EQ(testing::run_python("import numpy as np\nnp.save('" + (dir / "a.npy").string() +
                                "', np.arange(64*64, dtype=np.float64).reshape(64, 64))\n")
                .status,
            0);
  const std::string once = (dir / "once").string();
  // Tile 3 stops its worker (once); the tile timeout kills it after 1 s; its respawn runs tile 3.
  testing::RunnerProcess runner({"run", "--plugin", lib.string(), "-k", "tp_twice", "-i", (dir / "a.npy").string(), "-o",
                                 (dir / "out.npy").string(), "-t", "8,8", "-w", "2", "-m", std::get<0>(GetParam()), "--tile-timeout", "1",
                                 "--no-progress"},
                                "hang:3:" + once, (dir / "err").string());
  const auto t0 = std::chrono::steady_clock::now();
  while (!std::filesystem::exists(once) && std::chrono::steady_clock::now() - t0 < 10s) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(std::filesystem::exists(once)) << "no worker reached tile 3";
  if (std::get<1>(GetParam())) {  // the rebuilt plugin is written into the same file
    std::filesystem::copy_file(dir / "v2.so", lib, std::filesystem::copy_options::overwrite_existing);
  } else {  // the rebuilt plugin takes the path
    std::filesystem::rename(dir / "v2.so", lib);
  }
  const int status = runner.wait_exit(20s);
  std::ifstream err_file(dir / "err");
  std::stringstream err;
  err << err_file.rdbuf();
  ASSERT_EQ(status, 0) << err.str();
  const auto check = testing::run_python("import numpy as np\n"
                                         "a = np.load('" + (dir / "a.npy").string() + "'); o = np.load('" + (dir / "out.npy").string() + "')\n"
                                         "new = int((o == 3 * a).sum() - (a == 0).sum())\n"
                                         "assert new == 0, f'{new} elements from the new build'\n"
                                         "assert (o == a + a).all()\n");
  EXPECT_EQ(check.status, 0) << check.output;
}

INSTANTIATE_TEST_SUITE_P(RespawningModes, PluginReplacedMidJobTest,
                         ::testing::Combine(::testing::Values("share", "copy"), ::testing::Bool()),
                         [](const auto& param) {
                           return std::string(std::get<0>(param.param)) + (std::get<1>(param.param) ? "_rewritten_in_place" : "_renamed_over");
                         });

}  // namespace
}  // namespace tilepool
