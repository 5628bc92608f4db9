// Named data is never lost or silently wrong (issue 9), tried as users do it, with real
// processes and signals: a runner killed mid-job, a segment removed, replaced or truncated under
// a job, a job that fails with --force, read-only inputs, and jobs and pools past the old caps.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "fault/runner_process.hpp"
#include "support/test_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;
using testing::children_of;
using testing::kTilepool;
using testing::kTilepoolWithFaults;
using testing::run_command;
using testing::run_python;
using testing::RunnerProcess;
using testing::segments_of;
using testing::TempDir;
using testing::unique_name;

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool one_error_line(const std::string& out) {
  return out.starts_with("tilepool: error: ") && std::count(out.begin(), out.end(), '\n') == 1;
}

class NamedDataTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + in("a.npy") + "', np.arange(64*64, dtype=np.float64).reshape(64, 64))\n"
                         "np.save('" + in("b.npy") + "', np.ones((64, 64)))\n"
                         "np.save('" + in("old.npy") + "', np.full((64, 64), 7.0))\n")
                  .status, 0);
  }
  void TearDown() override {
    for (const auto& n : names_) (void)run_command(kTilepool + " rm " + n);
  }
  std::string in(const char* name) const { return (dir_ / name).string(); }
  std::string name(const char* tag) {
    names_.push_back(unique_name(tag));
    return names_.back();
  }
  void put(const std::string& file, const std::string& seg) {
    ASSERT_EQ(run_command(kTilepool + " put " + file + " " + seg).status, 0);
  }
  /// True if the segment holds `expr` (numpy, `a` is a.npy's array).
  bool holds(const std::string& seg, const std::string& expr) {
    const auto r = run_python("import numpy as np\n"
                              "a=np.load('" + in("a.npy") + "')\n"
                              "x=np.load('/dev/shm/" + seg + "')\n"
                              "print('OK' if np.array_equal(x, " + expr + ") else 'DIFF')");
    return r.output == "OK\n";
  }
  /// Waits until the runner `pid` has a job segment ending in `role` (or 5 s pass).
  static bool wait_for_segment(pid_t pid, const std::string& role) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const auto& s : segments_of(pid)) {
        if (s.ends_with(role)) return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  /// A large matmul input (`n` x `n`), so a job on it runs long enough to be interfered with.
  void put_matrix(const std::string& seg, int n) {
    ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("m.npy") + "', np.random.rand(" + std::to_string(n) + ", " +
                         std::to_string(n) + "))").status, 0);
    put(in("m.npy"), seg);
  }

  TempDir dir_;
  std::vector<std::string> names_;
};

const std::vector<std::string> kAllModes{"share", "fork", "copy", "threads"};
const std::vector<std::string> kProcessModes{"share", "fork", "copy"};  // where TILEPOOL_FAULT reaches a worker

class NamedDataAllModesTest : public NamedDataTest {};
class NamedDataProcessModesTest : public NamedDataTest {};

// --- 1. atomic outputs -------------------------------------------------------------------------

TEST_P(NamedDataProcessModesTest, RunnerKilledMidJobLeavesTheOldNamedOutputAndGcRemovesTheBuiltOne) {
  const std::string keep = name("keep");
  put(in("old.npy"), keep);
  RunnerProcess runner({"run", "-k", "add", "-i", in("a.npy"), "-i", in("b.npy"), "-o", "shm:" + keep, "--force", "-t", "8,8",
                        "-w", "2", "-m", GetParam(), "--no-progress"},
                       "hang:0");
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-out"));
  std::this_thread::sleep_for(200ms);  // the workers are computing; one has stopped on tile 0
  ::kill(runner.pid(), SIGKILL);
  EXPECT_EQ(runner.wait_exit(2s), 128 + SIGKILL);
  EXPECT_TRUE(holds(keep, "np.full((64, 64), 7.0)")) << "the user's old data changed";
  std::this_thread::sleep_for(300ms);  // let the workers die with their parent
  const auto gc = run_command(kTilepool + " gc");
  EXPECT_EQ(gc.status, 0) << gc.output;
  EXPECT_TRUE(segments_of(runner.pid()).empty()) << gc.output;
  EXPECT_TRUE(holds(keep, "np.full((64, 64), 7.0)"));
}

TEST_P(NamedDataAllModesTest, RunnerKilledAtAnyStageLeavesTheOldOrTheWholeNewOutput) {
  // Loading, spawning, computing or publishing: whenever SIGKILL lands, the name holds the old
  // array or the whole result, and gc leaves nothing of the run.
  ASSERT_EQ(run_python("import numpy as np\n"
                       "np.save('" + in("big.npy") + "', np.arange(2000*2000, dtype=np.float64).reshape(2000, 2000))\n"
                       "np.save('" + in("old.npy") + "', np.full((2000, 2000), 7.0))\n").status, 0);
  const std::string keep = name("keep");
  for (const int delay_ms : {5, 20, 40, 80, 160, 320}) {
    put(in("old.npy"), keep);
    RunnerProcess runner({"run", "-k", "negate", "-i", in("big.npy"), "-o", "shm:" + keep, "--force", "-t", "50,50", "-w", "1",
                          "-m", GetParam(), "--no-progress"},
                         "");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(runner.pid(), SIGKILL);
    runner.wait_exit(5s);
    std::this_thread::sleep_for(100ms);  // let its workers die with it
    EXPECT_EQ(run_command(kTilepool + " gc").status, 0);
    EXPECT_TRUE(segments_of(runner.pid()).empty()) << "after " << delay_ms << " ms";
    const auto r = run_python("import numpy as np\n"
                              "x=np.load('/dev/shm/" + keep + "')\n"
                              "print('OLD' if np.all(x == 7.0) else 'NEW' if np.array_equal(x, -np.load('" + in("big.npy") +
                              "')) else 'TORN')");
    EXPECT_TRUE(r.output == "OLD\n" || r.output == "NEW\n") << "after " << delay_ms << " ms: " << r.output;
    ASSERT_EQ(run_command(kTilepool + " rm " + keep).status, 0);
  }
}

TEST_F(NamedDataTest, RunnerKilledMidJobInThreadsModeLeavesNoNamedOutput) {
  const std::string m = name("m");
  const std::string res = name("res");
  put_matrix(m, 1500);
  RunnerProcess runner({"run", "-k", "matmul", "-i", "shm:" + m, "-i", "shm:" + m, "-o", "shm:" + res, "-t", "100,100", "-w",
                        "1", "-m", "threads", "--no-progress"},
                       "");
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-out"));
  std::this_thread::sleep_for(300ms);
  ::kill(runner.pid(), SIGKILL);
  EXPECT_EQ(runner.wait_exit(2s), 128 + SIGKILL);
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + res)) << "a half-made result is visible under the user's name";
  EXPECT_EQ(run_command(kTilepool + " gc").status, 0);
  EXPECT_TRUE(segments_of(runner.pid()).empty());
}

TEST_P(NamedDataProcessModesTest, FailedJobWithForceKeepsTheOldNamedOutput) {
  const std::string keep = name("keep");
  put(in("old.npy"), keep);
  // Tile 0 kills its worker every time: the job fails after the retries.
  const auto r = run_command("TILEPOOL_FAULT=mid_tile:0 " + kTilepoolWithFaults + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") +
                             " -o shm:" + keep + " --force -t 8,8 -w 2 --no-progress -m " + GetParam() + " 2>&1");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(one_error_line(r.output)) << r.output;
  EXPECT_TRUE(holds(keep, "np.full((64, 64), 7.0)"));
}

TEST_F(NamedDataTest, BadInputWithForceKeepsTheOldNamedOutput) {
  const std::string keep = name("keep");
  put(in("old.npy"), keep);
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("c.npy") + "', np.ones((3, 3)))").status, 0);
  const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("c.npy") + " -o shm:" + keep +
                             " --force -t 2,2 --no-progress 2>&1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(holds(keep, "np.full((64, 64), 7.0)"));
}

TEST_P(NamedDataAllModesTest, OutputWithForceMayReplaceItsOwnInput) {
  const std::string self = name("self");
  put(in("a.npy"), self);
  auto r = run_command(kTilepool + " run -k negate -i shm:" + self + " -o shm:" + self + " --force -t 8,8 --no-progress -m " +
                       GetParam() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(holds(self, "-a"));
  // The same through the segment's path, read as a file.
  r = run_command(kTilepool + " run -k negate -i /dev/shm/" + self + " -o shm:" + self + " --force -t 8,8 --no-progress -m " +
                  GetParam() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(holds(self, "a"));
}

TEST_F(NamedDataTest, NameCreatedDuringTheJobIsNotClobberedWithoutForce) {
  const std::string res = name("res");
  const std::string once = (dir_ / "once").string();
  // Tile 0 stops its worker once; the tile timeout kills it after 1 s and the job finishes.
  RunnerProcess runner({"run", "-k", "add", "-i", in("a.npy"), "-i", in("b.npy"), "-o", "shm:" + res, "-t", "8,8", "-w", "2",
                        "--tile-timeout", "1", "--no-progress"},
                       "hang:0:" + once, (dir_ / "err").string());
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-out"));
  put(in("old.npy"), res);  // someone else takes the name meanwhile
  EXPECT_EQ(runner.wait_exit(10s), 2);
  const std::string err = read_file(dir_ / "err");
  EXPECT_TRUE(one_error_line(err)) << err;
  EXPECT_NE(err.find(res), std::string::npos) << err;
  EXPECT_TRUE(holds(res, "np.full((64, 64), 7.0)"));
  EXPECT_TRUE(segments_of(runner.pid()).empty());
}

TEST_F(NamedDataTest, FileOutputsUnderFileBackingArePublishedWhole) {
  TempDir store;
  const auto out = dir_ / "out.npy";
  const std::string seg = unique_name("fb");
  auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") + " -o shm:" + seg +
                       " -t 8,8 --no-progress --backing file:" + store.path().string() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  // Only the published name is left in the store: the job-owned one was renamed onto it.
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(store.path())) files.push_back(e.path().filename().string());
  EXPECT_EQ(files, std::vector<std::string>{seg});
  r = run_command(kTilepool + " run -k negate -i " + (store.path() / seg).string() + " -o " + out.string() +
                  " -t 8,8 --no-progress --backing file:" + store.path().string() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(run_python("import numpy as np\na=np.load('" + in("a.npy") + "')\n"
                       "print(np.array_equal(np.load('" + out.string() + "'), -(a+1)))").output, "True\n");
}

// --- 2. bound by identity ----------------------------------------------------------------------

TEST_F(NamedDataTest, InputReplacedMidJobFailsTheJobWhenAWorkerIsRespawned) {
  const std::string src = name("in");
  put(in("a.npy"), src);
  const std::string once = (dir_ / "once").string();
  RunnerProcess runner({"run", "-k", "negate", "-i", "shm:" + src, "-o", in("out.npy"), "-t", "8,8", "-w", "1",
                        "--tile-timeout", "1", "--no-progress"},
                       "hang:0:" + once, (dir_ / "err").string());
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-control"));
  std::this_thread::sleep_for(200ms);  // the worker has stopped on tile 0
  ASSERT_EQ(run_command(kTilepool + " rm " + src).status, 0);
  put(in("old.npy"), src);  // another array under the same name
  // An input that changed while the job ran fails the job (1), as an input file that changes
  // does (InputFileReplacedMidJobFailsTheJobAndPublishesNothing); it was 2 here, bad input.
  const int status = runner.wait_exit(10s);
  const std::string err = read_file(dir_ / "err");
  EXPECT_EQ(status, 1) << err;
  EXPECT_TRUE(one_error_line(err)) << err;
  EXPECT_NE(err.find("'" + src + "'"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));
  EXPECT_TRUE(segments_of(runner.pid()).empty());
}

TEST_F(NamedDataTest, JobOutputRemovedMidJobFailsTheJobNamingIt) {
  const std::string res = name("res");
  RunnerProcess runner({"run", "-k", "add", "-i", in("a.npy"), "-i", in("b.npy"), "-o", "shm:" + res, "-t", "8,8", "-w", "1",
                        "--tile-timeout", "1", "--no-progress"},
                       "hang:0:" + (dir_ / "once").string(), (dir_ / "err").string());
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-out"));
  for (const auto& s : segments_of(runner.pid())) {
    if (s.ends_with("-out")) std::filesystem::remove("/dev/shm/" + s);
  }
  const int status = runner.wait_exit(10s);
  const std::string err = read_file(dir_ / "err");
  // Whether a respawned worker finds it gone or the runner does when it publishes, the job
  // failed (1): the output is the job's own, not the user's input.
  EXPECT_EQ(status, 1) << err;
  EXPECT_TRUE(one_error_line(err)) << err;
  EXPECT_NE(err.find("-out"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + res));
}

// --- 3. no signal deaths -----------------------------------------------------------------------

TEST_P(NamedDataAllModesTest, InputTruncatedMidJobIsAOneLineJobFailure) {
  const std::string m = name("m");
  const std::string res = name("res");
  put_matrix(m, 1500);
  RunnerProcess runner({"run", "-k", "matmul", "-i", "shm:" + m, "-i", "shm:" + m, "-o", "shm:" + res, "-t", "100,100", "-w",
                        "1", "-m", GetParam(), "--no-progress"},
                       "", (dir_ / "err").string());
  ASSERT_TRUE(wait_for_segment(runner.pid(), "-out"));
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(::truncate(("/dev/shm/" + m).c_str(), 0), 0);
  const int status = runner.wait_exit(30s);
  const std::string err = read_file(dir_ / "err");
  EXPECT_EQ(status, 1) << err;
  EXPECT_TRUE(one_error_line(err)) << err;
  EXPECT_NE(err.find("'" + m + "'"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + res));
  EXPECT_TRUE(segments_of(runner.pid()).empty());
}

// --- 8. the fault hook (test-only programs) reaches every process mode ------------------------

TEST_P(NamedDataProcessModesTest, WorkerKilledMidTileIsRetriedInEveryProcessMode) {
  const auto r = run_command("TILEPOOL_FAULT=mid_tile:3:" + (dir_ / "once").string() + " " + kTilepoolWithFaults + " run -k add -i " +
                             in("a.npy") + " -i " + in("b.npy") + " -o " + in("out.npy") + " -t 8,8 -w 2 --json --no-progress -m " +
                             GetParam());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_GE(nlohmann::json::parse(r.output)["retries"].get<int>(), 1);
  EXPECT_EQ(run_python("import numpy as np\na=np.load('" + in("a.npy") + "')\n"
                       "print(np.array_equal(np.load('" + in("out.npy") + "'), a+1))").output, "True\n");
}

// The hook lives only in the test-only programs (tests/fault_injection/): the production CLI and
// its worker run the job as if TILEPOOL_FAULT were unset, and no installed binary carries it.
TEST_P(NamedDataProcessModesTest, ProductionProgramsIgnoreTheFaultHook) {
  // This test program runs its pools on the hook's worker (TILEPOOL_WORKER): not the CLI here.
  const std::string production = "env -u TILEPOOL_WORKER ";
  const auto r = run_command(production + "TILEPOOL_FAULT=mid_tile:0 " + kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") +
                             " -o " + in("out.npy") + " -t 8,8 -w 2 --json --no-progress -m " + GetParam());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["retries"].get<int>(), 0);
  EXPECT_EQ(run_python("import numpy as np\na=np.load('" + in("a.npy") + "')\n"
                       "print(np.array_equal(np.load('" + in("out.npy") + "'), a+1))").output, "True\n");
  EXPECT_EQ(run_command(production + "TILEPOOL_FAULT=bogus " + kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") +
                        " -o " + in("out2.npy") + " -t 8,8 -w 2 --no-progress -m " + GetParam()).status, 0);
}

TEST(FaultHookTest, NoProductionBinaryContainsIt) {
  const std::filesystem::path bin(TILEPOOL_BIN_DIR);
  int checked = 0;
  for (const auto& file : {bin / "tilepool", bin / "tilepool-worker", bin / "tilepool-mpi", bin / ".." / "lib" / "libtilepool_shared.so",
                           bin / ".." / "lib" / "libtilepool_kernels.so", bin / ".." / "lib" / "libtilepool_runner.so"}) {
    if (!std::filesystem::exists(file)) continue;  // tilepool-mpi: built only where MPI is
    ++checked;
    EXPECT_EQ(run_command("grep -c TILEPOOL_FAULT " + file.string()).status, 1) << file;  // 1: no line matched
  }
  EXPECT_GE(checked, 5);
  // ... while the test-only programs do.
  EXPECT_EQ(run_command("grep -q TILEPOOL_FAULT " + (bin / "tilepool-worker-faults").string()).status, 0);
}

// ... and keeps its kind in every mode: a malformed hook value is a usage error, exit 2 (share
// and copy workers' start failures were all "job failed", exit 1, whatever they were).
TEST_P(NamedDataProcessModesTest, WorkerStartFailureIsOneLine) {
  const auto r = run_command("TILEPOOL_FAULT=bogus " + kTilepoolWithFaults + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") +
                             " -o " + in("out.npy") + " -t 8,8 -w 2 --no-progress -m " + GetParam() + " 2>&1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(one_error_line(r.output)) << r.output;
  EXPECT_NE(r.output.find("TILEPOOL_FAULT"), std::string::npos) << r.output;
}

// --- 7. no fixed capacities --------------------------------------------------------------------

TEST_F(NamedDataTest, MillionTilesOfFourByFourRunCorrectly) {
  ASSERT_EQ(run_python("import numpy as np\n"
                       "np.save('" + in("big.npy") + "', np.arange(4000*4000, dtype=np.float32).reshape(4000, 4000))\n").status, 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command(kTilepool + " run -k negate -i " + in("big.npy") + " -o " + in("neg.npy") +
                             " -t 4,4 -w 2 --json --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  EXPECT_EQ(nlohmann::json::parse(r.output)["tiles"], 1'000'000);
  EXPECT_EQ(run_python("import numpy as np\n"
                       "print(np.array_equal(np.load('" + in("neg.npy") + "'), -np.load('" + in("big.npy") + "')))").output,
            "True\n");
}

TEST_F(NamedDataTest, HundredShareWorkersRunAJob) {
  const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i " + in("b.npy") + " -o " + in("out.npy") +
                             " -t 4,4 -w 100 --json --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(nlohmann::json::parse(r.output)["workers"], 100);
}

// --- 9. files mapped in place ------------------------------------------------------------------
// A .npy input is mapped as it is (workers attach the runner's descriptor of it) and a .npy
// output is written in place in a file that has no name until the job succeeded.

/// True once process `pid` holds `path` open (it has mapped that input).
bool wait_until_open(pid_t pid, const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
      std::error_code link_ec;
      if (std::filesystem::read_symlink(e.path(), link_ec) == path) return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_P(NamedDataAllModesTest, RunnerKilledAtAnyStageLeavesNoFileButTheOldOrTheWholeNewOutputFile) {
  ASSERT_EQ(run_python("import numpy as np\n"
                       "np.save('" + in("big.npy") + "', np.arange(2000*2000, dtype=np.float64).reshape(2000, 2000))\n"
                       "np.save('" + in("old2k.npy") + "', np.full((2000, 2000), 7.0))\n").status, 0);
  const std::string out = in("out.npy");
  for (const int delay_ms : {5, 20, 40, 80, 160, 320}) {
    std::filesystem::copy_file(in("old2k.npy"), out, std::filesystem::copy_options::overwrite_existing);
    const std::vector<std::string> before = names_in(dir_.path());
    RunnerProcess runner({"run", "-k", "negate", "-i", in("big.npy"), "-o", out, "--force", "-t", "50,50", "-w", "1", "-m",
                          GetParam(), "--no-progress"},
                         "");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(runner.pid(), SIGKILL);
    runner.wait_exit(5s);
    std::this_thread::sleep_for(100ms);  // let its workers die with it
    // A hidden temporary of the killed run (its output's, or one that probed the directory)
    // may be there for an instant; the next run's sweep removes it, and nothing else is left.
    (void)remove_stale_file_temporaries(dir_.path());
    EXPECT_EQ(names_in(dir_.path()), before) << "after " << delay_ms << " ms: a file of the killed run was left";
    const auto r = run_python("import numpy as np\n"
                              "x=np.load('" + out + "')\n"
                              "print('OLD' if np.all(x == 7.0) else 'NEW' if np.array_equal(x, -np.load('" + in("big.npy") +
                              "')) else 'TORN')");
    EXPECT_TRUE(r.output == "OLD\n" || r.output == "NEW\n") << "after " << delay_ms << " ms: " << r.output;
    EXPECT_EQ(run_command(kTilepool + " gc").status, 0);
    EXPECT_TRUE(segments_of(runner.pid()).empty()) << "after " << delay_ms << " ms";
  }
}

TEST_P(NamedDataAllModesTest, InputFileTruncatedMidJobIsAOneLineJobFailureNamingTheFile) {
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in("m.npy") + "', np.random.rand(1500, 1500))").status, 0);
  RunnerProcess runner({"run", "-k", "matmul", "-i", in("m.npy"), "-i", in("m.npy"), "-o", in("res.npy"), "-t", "100,100", "-w",
                        "1", "-m", GetParam(), "--no-progress"},
                       "", (dir_ / "err").string());
  ASSERT_TRUE(wait_until_open(runner.pid(), in("m.npy")));
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(::truncate(in("m.npy").c_str(), 0), 0);
  const int status = runner.wait_exit(30s);
  const std::string err = read_file(dir_ / "err");
  EXPECT_EQ(status, 1) << err;
  EXPECT_TRUE(one_error_line(err)) << err;
  EXPECT_NE(err.find(in("m.npy")), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(in("res.npy")));
  EXPECT_TRUE(segments_of(runner.pid()).empty());
}

TEST_F(NamedDataTest, InputFileReplacedMidJobFailsTheJobAndPublishesNothing) {
  // The worker stops on tile 0 and is killed by the tile timeout; its replacement attaches the
  // runner's descriptor of a.npy (never the file renamed over the path meanwhile), and when the
  // last tile is done the job sees that a.npy is not the file it started with: its result
  // would not be the result of the input under that name, so it fails and publishes nothing.
  RunnerProcess runner({"run", "-k", "negate", "-i", in("a.npy"), "-o", in("out.npy"), "-t", "8,8", "-w", "1",
                        "--tile-timeout", "1", "--no-progress"},
                       "hang:0:" + (dir_ / "once").string(), (dir_ / "err").string());
  ASSERT_TRUE(wait_until_open(runner.pid(), in("a.npy")));
  std::this_thread::sleep_for(200ms);
  std::filesystem::rename(in("old.npy"), in("a.npy"));
  EXPECT_EQ(runner.wait_exit(10s), 1);
  EXPECT_EQ(read_file(dir_ / "err"), "tilepool: error: " + in("a.npy") +
                                         ": changed while the job ran (another file took its name); its result would mix old "
                                         "and new data, so nothing was published\n");
  EXPECT_FALSE(std::filesystem::exists(in("out.npy")));
}

TEST_P(NamedDataAllModesTest, InputFileOfAnotherUserThatWeMayReadIsMappedInPlace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  ASSERT_EQ(::chown(in("a.npy").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(in("a.npy").c_str(), 0644), 0);
  const std::string with_space = in("my data.npy");
  std::filesystem::copy_file(in("b.npy"), with_space);
  const auto r = run_command(kTilepool + " run -k add -i " + in("a.npy") + " -i '" + with_space + "' -o " + in("out.npy") +
                             " -t 8,8 -w 2 --no-progress -m " + GetParam() + " 2>&1");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(run_python("import numpy as np\n"
                       "print(np.array_equal(np.load('" + in("out.npy") + "'), np.arange(64*64.0).reshape(64, 64) + 1))").output,
            "True\n");
}

INSTANTIATE_TEST_SUITE_P(Modes, NamedDataAllModesTest, ::testing::ValuesIn(kAllModes));
INSTANTIATE_TEST_SUITE_P(Modes, NamedDataProcessModesTest, ::testing::ValuesIn(kProcessModes));

}  // namespace
}  // namespace tilepool
