// Ctrl-C and SIGTERM at any moment of a run, while hundreds or thousands of share workers start
// included. A terminal sends SIGINT to every process of the foreground process group, so the
// tests signal the runner's whole group, workers and all: the run must end within a second
// with 128 + the signal, say so in one line that blames no worker, publish nothing and leave
// nothing in /dev/shm.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <thread>

#include "fault/runner_process.hpp"
#include "support/test_support.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;
using testing::alive;
using testing::children_of;
using testing::Group;
using testing::RunnerProcess;
using testing::run_python;
using testing::segments_of;
using testing::TempDir;

// How long a stop may take: the promise is "within a second"; the tests run beside other test
// processes on a 2-core machine, so they allow that second and half as much again. Under a
// sanitizer every process's start and exit costs more (its shadow memory is mapped and
// unmapped; CI measured 1,516 ms for 4,096 ASan workers), so there the allowance is doubled.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto kStopLimit = 3000ms;
#else
constexpr auto kStopLimit = 1500ms;
#endif

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP"; }

class InterruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + in("a.npy") + "', np.random.rand(64, 64))\n"
                         "np.save('" + in("b.npy") + "', np.random.rand(64, 64))\n").status, 0);
  }
  std::string in(const char* name) const { return (dir_ / name).string(); }

  /// Starts `tilepool ARGS` in a process group of its own, signals the group `delay` later and
  /// checks every promise about the stop. Returns false if the run was over before the signal,
  /// or past its last look at it (then it must have succeeded and published).
  // `to_group`: the signal goes to the runner's whole process group, as a terminal's Ctrl-C
  // does; otherwise to the runner alone (kill -INT PID).
  bool interrupt_and_check(const std::vector<std::string>& args, std::chrono::milliseconds delay, int sig,
                           const std::string& output, bool to_group = true) {
    const std::string err = in("stderr.txt");
    RunnerProcess runner(args, "", err, Group::own);
    std::this_thread::sleep_for(delay);
    if (!alive(runner.pid())) {  // finished first: nothing to interrupt
      EXPECT_EQ(runner.wait_exit(1s), 0) << read_file(err);
      std::filesystem::remove(output);
      return false;
    }
    const std::vector<pid_t> workers = children_of(runner.pid());
    if (to_group) {
      runner.signal_group(sig);
    } else {
      ::kill(runner.pid(), sig);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const int status = runner.wait_exit(30s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    const std::string text = read_file(err);
    const std::string at = fmt::format("{} at {} ms ({} workers running then): ", signal_name(sig), delay.count(), workers.size());
    if (status == 0 && std::filesystem::exists(output) && !text.starts_with("tilepool: error")) {
      // The signal came after the run's last look at it, just before publication: the job was
      // whole, so the run published it and said so. Still within the stop limit, and still
      // nothing left behind.
      EXPECT_LE(took, kStopLimit) << at << "the run took " << took.count() << " ms to end";
      EXPECT_TRUE(segments_of(runner.pid()).empty()) << at;
      for (const pid_t w : workers) EXPECT_FALSE(alive(w)) << at << "worker " << w << " outlived the run";
      std::filesystem::remove(output);
      return false;
    }
    EXPECT_EQ(status, 128 + sig) << at << text;
    EXPECT_LE(took, kStopLimit) << at << "the run took " << took.count() << " ms to stop";
    // Nothing to say only if the signal came before the runner had started anything (it was
    // still loading its libraries: the signal's default action ended it).
    if (!text.empty() || !workers.empty()) {
      EXPECT_TRUE(text.starts_with(fmt::format("tilepool: error: interrupted by {}", signal_name(sig)))) << at << text;
      EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << at << text;
    }
    EXPECT_EQ(text.find("before it was ready"), std::string::npos) << at << text;
    EXPECT_EQ(text.find("signal " + std::to_string(sig)), std::string::npos) << at << text;
    EXPECT_FALSE(std::filesystem::exists(output)) << at << "the output was published";
    EXPECT_TRUE(segments_of(runner.pid()).empty()) << at;
    for (const pid_t w : workers) EXPECT_FALSE(alive(w)) << at << "worker " << w << " outlived the run";
    return true;
  }

  TempDir dir_;
};

// With 300 workers (and 1,024 tiles, so that all 300 start) a run spends its first second or
// more starting them: a signal then was lost (the job ran on and published, exit 0) or blamed
// on a worker that the terminal's SIGINT killed ("worker 0 exited before it was ready:
// signal 2", exit 1).
TEST_F(InterruptTest, SignalToTheProcessGroupWhileHundredsOfShareWorkersStartStopsTheRunWithinASecond) {
  const std::vector<std::string> args{"run", "-k", "add", "-i", in("a.npy"), "-i", in("b.npy"), "-o", in("out.npy"),
                                      "-t", "2,2", "-w", "300", "--no-progress"};
  int interrupted = 0;
  for (const int sig : {SIGINT, SIGTERM}) {
    for (const auto delay : {40ms, 80ms, 150ms, 300ms, 600ms, 1000ms}) {
      interrupted += interrupt_and_check(args, delay, sig, in("out.npy")) ? 1 : 0;
    }
  }
  EXPECT_GE(interrupted, 8) << "most signals should have found the run still starting its workers";
}

TEST_F(InterruptTest, SignalToTheProcessGroupStopsEveryModeWithinASecond) {
  for (const std::string mode : {"share", "fork", "copy", "threads"}) {
    SCOPED_TRACE(mode);
    // A matmul of seconds (2500^2: 1500^2 took under 0.4 s in threads mode): the signal comes
    // while tiles run.
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + in("ma.npy") + "', np.random.rand(2500, 2500))\n"
                         "np.save('" + in("mb.npy") + "', np.random.rand(2500, 2500))\n").status, 0);
    const std::vector<std::string> args{"run", "-k", "matmul", "-i", in("ma.npy"), "-i", in("mb.npy"), "-o", in("mout.npy"),
                                        "-t", "50,50", "-w", "8", "-m", mode, "--no-progress"};
    EXPECT_TRUE(interrupt_and_check(args, 400ms, SIGINT, in("mout.npy"))) << "the job ended before the signal";
  }
}

// `tilepool put` and `get` of a big array: before, they had no handlers, so a signal ended them
// by its default action with nothing said, and put left its whole unpublished copy
// (tilepool-PID-...-put, 1 GiB here) in /dev/shm for gc to find.
TEST_F(InterruptTest, SignalDuringPutOrGetStopsItWithinASecondSaysSoAndLeavesNothing) {
  // 1 GiB of float64, sparse: written in no time; put and get copy every byte of it.
  ASSERT_EQ(run_python("import numpy as np\nnp.lib.format.open_memmap('" + in("big.npy") +
                       "', mode='w+', dtype='f8', shape=(16384, 8192)).flush()\n").status, 0);
  const std::string name = fmt::format("tptest-interrupt-put-{}", ::getpid());
  int interrupted = 0;
  for (const int sig : {SIGINT, SIGTERM}) {
    for (const auto delay : {60ms, 200ms}) {
      interrupted += interrupt_and_check({"put", in("big.npy"), name}, delay, sig, "/dev/shm/" + name) ? 1 : 0;
    }
  }
  EXPECT_GE(interrupted, 2) << "put should have been copying when most signals came";
  // get: the segment to a file, written a piece at a time.
  RunnerProcess put({"put", in("big.npy"), name}, "", in("put.txt"), Group::own);
  ASSERT_EQ(put.wait_exit(60s), 0) << read_file(in("put.txt"));
  interrupted = 0;
  for (const int sig : {SIGINT, SIGTERM}) {
    for (const auto delay : {60ms, 200ms}) {
      interrupted += interrupt_and_check({"get", name, in("got.npy")}, delay, sig, in("got.npy")) ? 1 : 0;
    }
  }
  RunnerProcess rm({"rm", name}, "", in("rm.txt"), Group::own);
  EXPECT_EQ(rm.wait_exit(10s), 0) << read_file(in("rm.txt"));
  EXPECT_GE(interrupted, 2) << "get should have been writing when most signals came";
}

// Threads mode's kernels cannot be stopped inside a tile: before, a signal waited for every
// running tile to end (9.5 s with 10 s tiles; a second SIGINT and a SIGTERM changed nothing but
// the exit status, which then named the last signal).
TEST_F(InterruptTest, SignalInThreadsModeEndsTheRunWithinASecondWhileKernelsAreInsideLongTiles) {
  const std::string plugin = std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_kernels.so";
  const std::vector<std::string> args{"run", "--plugin", plugin, "-k", "tp_sleep", "-p", "ms=10000", "-i", in("a.npy"),
                                      "-o", in("out.npy"), "-t", "32,32", "-w", "2", "-m", "threads", "--no-progress"};
  for (const int sig : {SIGINT, SIGTERM}) {
    EXPECT_TRUE(interrupt_and_check(args, 400ms, sig, in("out.npy"))) << "the run ended before the signal";
  }
  // A second signal does not change the answer: the status is the first one's.
  RunnerProcess runner(args, "", in("stderr2.txt"), Group::own);
  std::this_thread::sleep_for(400ms);
  runner.signal_group(SIGINT);
  std::this_thread::sleep_for(50ms);
  runner.signal_group(SIGTERM);
  EXPECT_EQ(runner.wait_exit(5s), 128 + SIGINT) << read_file(in("stderr2.txt"));
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));
}

// A plugin is loaded first in a child process (a static initializer that throws must not end
// the runner); one whose static initializer never returns kept the runner waiting for that child
// for good: the child had inherited the runner's handlers, which only note a signal.
TEST_F(InterruptTest, SignalToTheProcessGroupWhileAPluginHangsInItsStaticInitializerStopsTheRun) {
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("a.npy") + "', np.ones((8, 8)))\n").status, 0);
  const std::string plugin = std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_hang_on_load.so";
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::vector<std::string> args{"run", "--plugin", plugin, "-k", "add", "-i", in("a.npy"), "-i", in("a.npy"),
                                        "-o", in("out.npy"), "-t", "4,4", "--no-progress"};
    EXPECT_TRUE(interrupt_and_check(args, 500ms, sig, in("out.npy"))) << "the run ended before the signal";
  }
}

// A filesystem without fallocate (FUSE mounts; ext2 on a loop device here): glibc's
// posix_fallocate reserves the output by writing into every block (about 8 s for 1 GiB here),
// and before, the run looked at no signal meanwhile and stopped only after it. Now the
// reservation goes 16 MiB at a time and looks at the signal between.
TEST_F(InterruptTest, SignalWhileTheOutputIsReservedOnAFilesystemWithoutFallocateStopsTheRunWithinASecond) {
  const auto image = dir_.path() / "ext2.img";
  const auto mnt = dir_.path() / "ext2";
  std::filesystem::create_directories(mnt);
  if (testing::run_command("truncate -s 2G " + image.string() + " && mkfs.ext2 -q -F " + image.string() + " 2>&1").status != 0 ||
      testing::run_command("mount -o loop " + image.string() + " " + mnt.string() + " 2>&1").status != 0) {
    GTEST_SKIP() << "cannot make and mount an ext2 image here (not root, or no loop devices)";
  }
  struct Unmount {
    std::filesystem::path at;
    ~Unmount() { (void)::umount(at.c_str()); }
  } unmount{mnt};
  // 1 GiB of float64, sparse: written in no time, read as zeros.
  ASSERT_EQ(run_python("import numpy as np\nnp.lib.format.open_memmap('" + in("big.npy") +
                       "', mode='w+', dtype='f8', shape=(11585, 11585)).flush()\n").status, 0);
  const std::string out = (mnt / "out.npy").string();
  const std::vector<std::string> args{"run", "-k", "negate", "-i", in("big.npy"), "-o", out, "-t", "2048,2048", "--no-progress"};
  const bool interrupted = interrupt_and_check(args, 500ms, SIGINT, out);
  std::size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(mnt)) entries += e.path().filename() == "lost+found" ? 0 : 1;
  EXPECT_TRUE(interrupted) << "the run ended before the signal";
  EXPECT_EQ(entries, 0U) << "the interrupted run left a file beside its output";
}

// kill -INT of the runner alone (a supervisor's or a script's signal, not the terminal's):
// before, the runner noted it and went on waiting for the child that loads the plugin, forever.
TEST_F(InterruptTest, SignalToTheRunnerAloneWhileAPluginHangsInItsStaticInitializerStopsTheRun) {
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("a.npy") + "', np.ones((8, 8)))\n").status, 0);
  const std::string plugin = std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/libtptest_hang_on_load.so";
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::vector<std::string> args{"run", "--plugin", plugin, "-k", "add", "-i", in("a.npy"), "-i", in("a.npy"),
                                        "-o", in("out.npy"), "-t", "4,4", "--no-progress"};
    EXPECT_TRUE(interrupt_and_check(args, 500ms, sig, in("out.npy"), /*to_group=*/false)) << "the run ended before the signal";
  }
  // `tilepool kernels --plugin` too: it had no handlers, died of the signal and left the child
  // that loads the plugin running forever.
  const std::vector<std::string> args{"kernels", "--plugin", plugin};
  EXPECT_TRUE(interrupt_and_check(args, 500ms, SIGINT, in("out.npy"), /*to_group=*/false)) << "it ended before the signal";
}

// 4,096 workers on two cores: a demo that took more than 13 minutes (every worker started and
// woken for 16 tiles) and ignored SIGINT for 30 s. Now it finishes within a bound, and a
// SIGINT while it runs stops it within a second.
TEST_F(InterruptTest, DemoOfFourThousandWorkersFinishesInBoundedTimeAndStopsWithinASecondOfSigint) {
  const std::string err = in("stderr.txt");
  const auto t0 = std::chrono::steady_clock::now();
  {
    RunnerProcess demo({"demo", "--workers", "4096"}, "", err, Group::own);
    EXPECT_EQ(demo.wait_exit(120s), 0) << read_file(err);
  }
  const auto whole = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_LE(whole, 60s) << "the demo of 4,096 workers took " << whole.count() << " ms";
  std::printf("[ measured ] tilepool demo --workers 4096: %lld ms\n", static_cast<long long>(whole.count()));

  int interrupted = 0;
  for (const auto delay : {100ms, 300ms, whole / 2}) {
    RunnerProcess demo({"demo", "--workers", "4096"}, "", err, Group::own);
    std::this_thread::sleep_for(delay);
    if (!alive(demo.pid())) {
      EXPECT_EQ(demo.wait_exit(1s), 0) << read_file(err);
      continue;
    }
    const std::vector<pid_t> workers = children_of(demo.pid());
    demo.signal_group(SIGINT);
    const auto t1 = std::chrono::steady_clock::now();
    const int status = demo.wait_exit(60s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1);
    const std::string text = read_file(err);
    EXPECT_EQ(status, 130) << text;
    EXPECT_LE(took, kStopLimit) << "SIGINT at " << delay.count() << " ms: the demo took " << took.count() << " ms to stop";
    // Nothing to say only if the signal came before the demo had started anything (under ASan
    // it may still be loading its libraries at 100 ms: the signal's default action ended it).
    if (!text.empty() || !workers.empty()) {
      EXPECT_TRUE(text.starts_with("tilepool: error: interrupted by SIGINT")) << text;
    }
    EXPECT_TRUE(segments_of(demo.pid()).empty());
    for (const pid_t w : workers) EXPECT_FALSE(alive(w)) << "worker " << w << " outlived the demo";
    ++interrupted;
  }
  EXPECT_GE(interrupted, 1) << "every SIGINT came after the demo ended";
}

}  // namespace
}  // namespace tilepool
