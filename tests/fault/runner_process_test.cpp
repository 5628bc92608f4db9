// The tilepool runner as a process under faults: killed with SIGKILL, stopped by SIGINT or
// SIGTERM, given a backing store that is too small, and run several at once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/test_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;
using testing::run_command;
using testing::run_python;
using testing::TempDir;

const std::string kTilepool = std::string(TILEPOOL_BIN_DIR) + "/tilepool";

bool alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  const auto close = line.rfind(')');
  return !(line.size() > close + 2 && line[close + 2] == 'Z');
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string n = e.path().filename().string();
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(n)));
  }
  return out;
}

/// Job segments in /dev/shm that belong to `pid`.
std::vector<std::string> segments_of(pid_t pid) {
  return testing::entries_with_prefix("tilepool-" + std::to_string(pid) + "-");
}

/// A `tilepool run` child process, started with fork/exec so the test knows its pid.
class RunnerProcess {
 public:
  RunnerProcess(const std::vector<std::string>& args, const std::string& fault) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!fault.empty()) ::setenv("TILEPOOL_FAULT", fault.c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(kTilepool.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(kTilepool.c_str(), argv.data());
      ::_exit(127);
    }
  }
  RunnerProcess(const RunnerProcess&) = delete;
  RunnerProcess& operator=(const RunnerProcess&) = delete;
  ~RunnerProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// The exit status (or 128+signal), waiting at most `limit`; -1 on timeout.
  int wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

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

TEST_F(RunnerProcessTest, TooSmallBackingStoreIsAClearErrorBeforeAnyWorkerStarts) {
  const auto mnt = dir_ / "small";
  std::filesystem::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs here (not root?)";
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("big.npy") + "', np.zeros((512, 512)))").status, 0);  // 2 MiB
  const auto r = run_command(kTilepool + " run -k negate -i " + in("big.npy") + " -o " + in("neg.npy") +
                             " -t 64,64 --no-progress --backing file:" + mnt.string());
  const bool empty = std::filesystem::is_empty(mnt);
  ::umount(mnt.c_str());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not enough space"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--backing file:DIR"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(empty) << "the failed run left files in the small store";
  EXPECT_FALSE(std::filesystem::exists(in("neg.npy")));
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
