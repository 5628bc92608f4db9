// The tilepool runner as a process under faults: killed with SIGKILL, stopped by SIGINT or
// SIGTERM, given a backing store that is too small, and run several at once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "fault/runner_process.hpp"
#include "support/test_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/publish.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;
using testing::run_command;
using testing::run_python;
using testing::TempDir;

using testing::alive;
using testing::children_of;
using testing::kTilepool;
using testing::RunnerProcess;
using testing::segments_of;

class RunnerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + in("a.npy") + "', np.random.rand(64, 64))\n"
                         "np.save('" + in("b.npy") + "', np.random.rand(64, 64))\n").status, 0);
  }
  std::string in(const char* name) const { return (dir_ / name).string(); }
  /// A run whose worker stops itself on tile 0 and no tile timeout: it stalls until signalled.
  std::unique_ptr<RunnerProcess> start_stalled_run() {
    auto p = std::make_unique<RunnerProcess>(
        std::vector<std::string>{"run", "-k", "add", "-i", in("a.npy"), "-i", in("b.npy"), "-o", in("out.npy"), "-t", "8,8", "-w", "2", "--no-progress"},
        "hang:0");
    // Wait until both workers run and a worker has stopped on tile 0.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline && children_of(p->pid()).size() < 2) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(100ms);
    return p;
  }
  TempDir dir_;
};

TEST_F(RunnerProcessTest, KilledParentTakesItsWorkersAndGcRemovesItsSegments) {
  auto runner = start_stalled_run();
  const std::vector<pid_t> workers = children_of(runner->pid());
  ASSERT_EQ(workers.size(), 2u);
  ASSERT_FALSE(segments_of(runner->pid()).empty());

  ::kill(runner->pid(), SIGKILL);
  EXPECT_EQ(runner->wait_exit(2s), 128 + SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + 1s;
  bool gone = false;
  while (!gone && std::chrono::steady_clock::now() < deadline) {
    gone = !alive(workers[0]) && !alive(workers[1]);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(gone) << "workers outlived their parent by more than a second";

  // Its segments are stale now: ls says so, gc removes exactly those.
  const auto left = segments_of(runner->pid());
  ASSERT_FALSE(left.empty());
  EXPECT_NE(run_command(kTilepool + " ls").output.find("stale (pid " + std::to_string(runner->pid())), std::string::npos);
  const auto gc = run_command(kTilepool + " gc");
  EXPECT_EQ(gc.status, 0);
  EXPECT_TRUE(segments_of(runner->pid()).empty()) << gc.output;
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));
}

TEST_F(RunnerProcessTest, NewRunSweepsDeadOwnersLeftovers) {
  auto runner = start_stalled_run();
  ::kill(runner->pid(), SIGKILL);
  runner->wait_exit(2s);
  ASSERT_FALSE(segments_of(runner->pid()).empty());
  const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") + " -o " + in("o2.npy") + " -t 8,8 --no-progress");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(segments_of(runner->pid()).empty());
}

TEST_F(RunnerProcessTest, SigintStopsWorkersRemovesSegmentsAndExits130) {
  auto runner = start_stalled_run();
  const auto workers = children_of(runner->pid());
  ::kill(runner->pid(), SIGINT);
  EXPECT_EQ(runner->wait_exit(5s), 130);
  for (const pid_t w : workers) EXPECT_FALSE(alive(w));
  EXPECT_TRUE(segments_of(runner->pid()).empty());
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));  // no half-written output
}

TEST_F(RunnerProcessTest, SigtermStopsWorkersRemovesSegmentsAndExits143) {
  auto runner = start_stalled_run();
  ::kill(runner->pid(), SIGTERM);
  EXPECT_EQ(runner->wait_exit(5s), 143);
  EXPECT_TRUE(segments_of(runner->pid()).empty());
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));
}

// The same promise in copy mode, with a worker that is stopped (SIGSTOP: "hung, or stopped")
// and no --tile-timeout, the default: SIGINT to the runner must still end the run with 130.
// CopyLauncher::end_job(abandoned) waits for every I/O thread to go idle, and the stopped
// worker's I/O thread stays in CopyChannel::transfer, polling for replies that never come (it
// looks at the tile timeout only, never at the failed job), so the runner never exits.
TEST_F(RunnerProcessTest, SigintStopsACopyModeRunWhoseWorkerIsStoppedAndExits130) {
  ASSERT_EQ(run_python("import numpy as np\n"
                       "np.save('" + in("ma.npy") + "', np.random.rand(2000, 2000))\n"
                       "np.save('" + in("mb.npy") + "', np.random.rand(2000, 2000))\n").status, 0);
  RunnerProcess runner({"run", "-k", "matmul", "-i", in("ma.npy"), "-i", in("mb.npy"), "-o", in("mout.npy"), "-t", "100,100",
                        "-w", "2", "-m", "copy", "--no-progress"},
                       "");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && children_of(runner.pid()).size() < 2) std::this_thread::sleep_for(5ms);
  const std::vector<pid_t> workers = children_of(runner.pid());
  ASSERT_EQ(workers.size(), 2u);
  std::this_thread::sleep_for(300ms);  // both ready, the job under way (it takes seconds)
  ASSERT_EQ(::kill(workers[0], SIGSTOP), 0);
  std::this_thread::sleep_for(300ms);
  ::kill(runner.pid(), SIGINT);
  const int status = runner.wait_exit(5s);
  if (status == -1) {
    for (const pid_t w : workers) ::kill(w, SIGKILL);  // the runner is killed by ~RunnerProcess
    FAIL() << "the copy-mode runner did not exit within 5 s of SIGINT (a worker stopped, no tile timeout)";
  }
  EXPECT_EQ(status, 130);
  for (const pid_t w : workers) EXPECT_FALSE(alive(w));
  EXPECT_TRUE(segments_of(runner.pid()).empty());
  EXPECT_FALSE(std::filesystem::exists(in("mout.npy")));
}

TEST_F(RunnerProcessTest, TooSmallBackingStoreIsAClearErrorBeforeAnyWorkerStarts) {
  const auto mnt = dir_ / "small";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  // Big-endian: converted into a job segment in the store (a little-endian file is mapped in
  // place and needs no room there; see the next test).
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("big.npy") + "', np.zeros((512, 512), dtype='>f8'))").status, 0);  // 2 MiB
  const auto r = run_command(kTilepool + " run -k negate -i " + in("big.npy") + " -o " + in("neg.npy") +
                             " -t 64,64 --no-progress --backing file:" + mnt.string());
  const bool empty = std::filesystem::is_empty(mnt);
  ::umount(mnt.c_str());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not enough space"), std::string::npos) << r.output;
  // --backing file: was given: the remedy is more room, not the flag the user already gave.
  EXPECT_NE(r.output.find("(free space there, or give --backing file:DIR a filesystem with more room)"), std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(empty) << "the failed run left files in the small store";
  EXPECT_FALSE(std::filesystem::exists(in("neg.npy")));
}

// `put` killed while it copies: the name holds the whole array or nothing (before, a SIGINT or
// SIGKILL mid-copy left a named segment holding part of the file, which gc kept as a user's).
TEST_F(RunnerProcessTest, PutKilledWhileItCopiesLeavesNoNamedSegmentAndGcRemovesWhatItBuilt) {
  // 512 MiB of ones: copied into /dev/shm front to back in a few hundred ms, so a name that
  // holds part of it ends in zeros.
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("ones.npy") + "', np.ones((8192, 8192)))\n").status, 0);
  for (const auto delay : {20ms, 60ms, 150ms}) {
    const std::string name = testing::unique_name("put");
    RunnerProcess put({"put", in("ones.npy"), name}, "");
    std::this_thread::sleep_for(delay);
    ::kill(put.pid(), SIGKILL);
    (void)put.wait_exit(5s);
    if (std::filesystem::exists("/dev/shm/" + name)) {  // it finished first: then all of it is there
      const auto whole = run_python("import numpy as np\nx = np.load('/dev/shm/" + name + "', mmap_mode='r')\nprint(bool((x == 1).all()))\n");
      EXPECT_EQ(whole.output, "True\n") << "after " << delay.count() << " ms: the name holds part of the file";
      (void)std::filesystem::remove("/dev/shm/" + name);
    }
    EXPECT_EQ(run_command(kTilepool + " gc").status, 0);
    EXPECT_TRUE(segments_of(put.pid()).empty()) << "after " << delay.count() << " ms";
  }
}

// `put` into a store with no room left at all: before, the header's reservation failed first
// and the message said "needs 128 bytes", and the remedy named --backing although it was given.
TEST_F(RunnerProcessTest, PutIntoAFullStoreNamesTheWholeSizeAndTheRightRemedy) {
  const auto mnt = dir_ / "small";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("big.npy") + "', np.zeros((512, 512)))").status, 0);  // 2 MiB
  (void)run_command("dd if=/dev/zero of=" + (mnt / "filler").string() + " bs=64k count=64 2>/dev/null");  // fills it
  const std::string name = testing::unique_name("full");
  const auto r = run_command(kTilepool + " put " + in("big.npy") + " " + name + " --backing file:" + mnt.string() + " 2>&1");
  std::filesystem::remove(mnt / "filler");
  const bool empty = std::filesystem::is_empty(mnt);
  ::umount(mnt.c_str());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not enough space: needs 2097280 bytes in " + mnt.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(free space there, or give --backing file:DIR a filesystem with more room)"), std::string::npos)
      << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(empty) << "the failed put left its segment in the store";
}

// A .npy input that needs no conversion is mapped in place and the output file is written in
// place in its directory: only the control block lives in the store, so a 2 MiB job runs with a
// 1 MiB store in every mode.
TEST_F(RunnerProcessTest, MappedFileInputsAndOutputsNeedNoRoomInTheStore) {
  const auto mnt = dir_ / "small";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("big.npy") + "', np.arange(512.0 * 512).reshape(512, 512))").status, 0);
  std::string failures;
  for (const char* mode : {"share", "fork", "copy", "threads"}) {
    const std::string out = in("neg.npy");
    const auto r = run_command(kTilepool + " run -k negate -i " + in("big.npy") + " -o " + out + " --force -t 64,64 -m " +
                               mode + " --no-progress --backing file:" + mnt.string());
    const auto check = run_python("import numpy as np\nprint(np.array_equal(np.load('" + out + "'), -np.load('" + in("big.npy") +
                                  "')))");
    if (r.status != 0 || check.output != "True\n") failures += std::string(mode) + ": " + r.output + check.output;
  }
  const bool empty = std::filesystem::is_empty(mnt);
  ::umount(mnt.c_str());
  EXPECT_EQ(failures, "");
  EXPECT_TRUE(empty) << "the runs left files in the store";
}

// --force replaces a file (or a symlink itself), never a FIFO or device under the name (as
// root, `-o /dev/null --force` used to turn /dev/null into a regular file).
TEST_F(RunnerProcessTest, ForceRefusesToReplaceAnOutputThatIsNotARegularFile) {
  const std::string fifo = in("pipe.npy");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const char* mode : {"share", "threads"}) {
    const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") + " -o " + fifo +
                               " -t 8,8 --force --no-progress -m " + mode + " 2>&1");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("not a regular file"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_TRUE(std::filesystem::is_fifo(fifo)) << mode;
  }
}

// Where a run was killed while its output had a hidden name (no O_TMPFILE, or between the link
// and the rename of --force), the next run in that directory removes the leftover; a live
// process's is left alone.
TEST_F(RunnerProcessTest, NextRunRemovesHiddenTemporariesOfKilledRunsInTheOutputDirectory) {
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const auto stale = hidden_temporary_path(dir_.path(), "o.npy", ProcessOwner{dead, this_process().start_time});
  const auto live = hidden_temporary_path(dir_.path(), "o.npy");
  std::ofstream(stale) << "half";
  std::ofstream(live) << "mine";
  const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") + " -o " + in("o.npy") +
                             " -t 8,8 --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));
}

TEST_F(RunnerProcessTest, SeveralRunnersAtOnceAllSucceed) {
  std::vector<std::string> outputs;
  std::string cmd;
  for (int i = 0; i < 4; ++i) {
    // Appending, not "o" + std::to_string(i): g++ 12 warns falsely (-Wrestrict) on the latter.
    std::string file = "o";
    file.append(std::to_string(i)).append(".npy");
    outputs.push_back((dir_ / file).string());
    cmd.append(kTilepool).append(" run -k add -i ").append(in("a.npy")).append(" -i ").append(in("b.npy"));
    cmd.append(" -o ").append(outputs.back()).append(" -t 8,8 --no-progress & ");
  }
  cmd.append("wait");
  ASSERT_EQ(run_command("bash -c '" + cmd + "'").status, 0);
  for (const auto& out : outputs) EXPECT_TRUE(std::filesystem::exists(out)) << out;
}

}  // namespace
}  // namespace tilepool
