// tilepool-mpi on separate nodes: three "nodes" on this machine, each with its own hostname,
// pids, /dev/shm, /tmp and /proc (mount, UTS and pid namespaces, tests/mpi/fake_nodes.sh), one
// shared directory bind-mounted into all of them, and mpirun reaching them through its
// remote-shell agent as it reaches hosts with ssh. What one host cannot show: a node whose view
// of the output's directory differs, and what a stopped job leaves on each node.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "mpi_test_text.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/npy.hpp"

namespace tilepool {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::CommandResult;
using testing::run_command;

const std::string kBin = TILEPOOL_BIN_DIR;
const std::string kNodes = std::string(TILEPOOL_SOURCE_DIR) + "/tests/mpi/fake_nodes.sh";
const std::vector<std::string> kHosts = {"tpnode1", "tpnode2", "tpnode3"};

using testing::lines_of;
using testing::slurp;

// Distinct float64 values in a pattern no neighbour repeats: blur and sum see every element.
void write_input(const fs::path& path, std::int64_t rows, std::int64_t cols) {
  std::vector<double> v(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>((i * 7919) % 10007) / 13.0;
  const Shape shape = {rows, cols};
  npy::write_file(path, DType::float64, shape,
                  std::span<const std::byte>(reinterpret_cast<const std::byte*>(v.data()), v.size() * sizeof(double)));
}

class MpiNodesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) {
      skip_reason_ = "separate nodes need root (mount, UTS and pid namespaces per node)";
      return;
    }
    if (run_command("unshare --mount --uts --pid --fork true 2>&1").status != 0) {
      skip_reason_ = "this machine refuses new mount/UTS/pid namespaces (unshare failed): cannot simulate nodes";
      return;
    }
    root_ = new testing::TempDir();
    shared_ = root_->path() / "shared";
    state_ = root_->path() / "state";
    fs::create_directories(shared_);
    std::string names;
    for (const std::string& h : kHosts) names += " " + h;
    // The nodes end themselves if this process dies without TearDownTestSuite (a ctest timeout):
    // they live while it holds this lock (close-on-exec: no child inherits it).
    const fs::path owner = root_->path() / "owner.lock";
    owner_fd_ = ::open(owner.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (owner_fd_ < 0 || ::flock(owner_fd_, LOCK_EX) != 0) {
      skip_reason_ = "cannot lock " + owner.string();
      return;
    }
    const CommandResult up = run_command(
        fmt::format("FAKE_NODES_OWNER_LOCK={} {} up {} {} {} 2>&1", owner.string(), kNodes, state_.string(), shared_.string(), names));
    if (up.status != 0) {
      skip_reason_ = "fake nodes did not start: " + up.output;
      return;
    }
    std::ofstream(shared_ / "hosts") << "tpnode1 slots=1\ntpnode2 slots=1\ntpnode3 slots=1\n";
  }
  static void TearDownTestSuite() {
    if (root_ == nullptr) return;
    (void)run_command(fmt::format("{} down {} 2>&1", kNodes, state_.string()));
    if (owner_fd_ >= 0) ::close(owner_fd_);
    owner_fd_ = -1;
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    dir_ = shared_ / ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(dir_);
  }
  void TearDown() override {
    // Whatever a test mounted on a node under its directory goes with it.
    for (const std::string& h : kHosts) (void)on_node(h, fmt::format("umount -R {} 2>/dev/null; true", (dir_ / "out").string()));
  }

  // `tilepool-mpi run ARGS` on the three nodes, one rank each; `tag` marks the ranks' environment.
  static std::string mpirun(const std::string& tag = "none", const std::string& extra = "") {
    return fmt::format(
        "env TILEPOOL_FAKE_NODES={} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 50 mpirun --allow-run-as-root -q "
        "--hostfile {} --map-by ppr:1:node --mca plm_rsh_agent '{} agent' --mca btl self,tcp --mca btl_tcp_if_include lo "
        "--mca oob_tcp_if_include lo -x TILEPOOL_TEST_TAG={} {} {}/tilepool-mpi run",
        state_.string(), (shared_ / "hosts").string(), kNodes, tag, extra, kBin);
  }
  static CommandResult on_node(const std::string& host, const std::string& command) {
    return run_command(fmt::format("{} exec {} {} '{}'", kNodes, state_.string(), host, command));
  }
  // This node's job segments and anything else of ours in its /dev/shm.
  static std::string node_shm(const std::string& host) { return on_node(host, "ls -A /dev/shm").output; }
  // Names in the test's output directory other than `keep`.
  std::vector<std::string> extra_files(const std::set<std::string>& keep) const {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir_ / "out")) {
      if (keep.count(e.path().filename().string()) == 0) found.push_back(e.path().filename().string());
    }
    return found;
  }

  static inline std::string skip_reason_;
  static inline testing::TempDir* root_ = nullptr;
  static inline fs::path shared_;
  static inline fs::path state_;
  static inline int owner_fd_ = -1;
  fs::path dir_;
};

TEST_F(MpiNodesTest, BlurAndSumOnSeparateNodesAreBitwiseTilepoolRun) {
  write_input(dir_ / "in.npy", 96, 80);
  fs::create_directories(dir_ / "out");
  for (const std::string kernel : {"blur3x3", "sum"}) {
    SCOPED_TRACE(kernel);
    const std::string flags = fmt::format("--kernel {} --input {} --tile 16,16 --workers 1", kernel, (dir_ / "in.npy").string());
    const fs::path ref = dir_ / fmt::format("ref-{}.npy", kernel);
    const fs::path out = dir_ / "out" / fmt::format("{}.npy", kernel);
    ASSERT_EQ(run_command(fmt::format("{}/tilepool run {} --output {} 2>&1", kBin, flags, ref.string())).status, 0);

    const CommandResult r = run_command(fmt::format("{} {} --json --output {} 2>&1", mpirun(), flags, out.string()));

    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(slurp(out) == slurp(ref)) << out << " differs from " << ref;
    // Every node ran its share, and each was a host of its own.
    for (const std::string& h : kHosts) EXPECT_NE(r.output.find(fmt::format("\"host\":\"{}\"", h)), std::string::npos) << r.output;
  }
  EXPECT_TRUE(extra_files({"blur3x3.npy", "sum.npy"}).empty()) << "left beside the outputs: " << extra_files({"blur3x3.npy", "sum.npy"})[0];
  for (const std::string& h : kHosts) EXPECT_EQ(node_shm(h), "") << h;
}

// Rank 0's node too: before, its node's error was told without its rank and node (the agreement
// lost that it was a node's error).
TEST_F(MpiNodesTest, OutputDirectoryMissingOnOneNodeIsOneLineNamingThatNodeInSeconds) {
  write_input(dir_ / "in.npy", 32, 32);
  fs::create_directories(dir_ / "out" / "sub");
  for (const int rank : {1, 0}) {
    const std::string host = kHosts[static_cast<std::size_t>(rank)];
    SCOPED_TRACE(host);
    // On that node alone, out/ is an empty filesystem: out/sub does not exist there.
    ASSERT_EQ(on_node(host, fmt::format("mount -t tmpfs tpnode-empty {}", (dir_ / "out").string())).status, 0);
    const auto t0 = Clock::now();

    const CommandResult r = run_command(fmt::format("{} --kernel blur3x3 --input {} --tile 8,8 --workers 1 --output {} 2>&1", mpirun(),
                                                    (dir_ / "in.npy").string(), (dir_ / "out" / "sub" / "res.npy").string()));

    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    (void)on_node(host, fmt::format("umount {}", (dir_ / "out").string()));
    EXPECT_EQ(r.status, 2) << r.output;
    const std::vector<std::string> lines = lines_of(r.output);
    ASSERT_EQ(lines.size(), 1u) << r.output;
    EXPECT_EQ(lines[0], fmt::format("tilepool-mpi: error: rank {} (node {}): {}: cannot create a file in {}: No such file or directory",
                                    rank, host, (dir_ / "out" / "sub" / "res.npy").string(), (dir_ / "out" / "sub").string()));
    EXPECT_LT(seconds, 40.0) << "mpirun's timeout (50 s) is what ended it: a hang";
    EXPECT_TRUE(fs::is_empty(dir_ / "out" / "sub"));
  }
}

TEST_F(MpiNodesTest, ReadOnlyOutputDirectoryOnOneNodeIsOneLineNamingThatNode) {
  write_input(dir_ / "in.npy", 32, 32);
  fs::create_directories(dir_ / "out");
  const std::string out = (dir_ / "out").string();
  ASSERT_EQ(on_node("tpnode3", fmt::format("mount --bind {0} {0} && mount -o remount,bind,ro {0}", out)).status, 0);

  const CommandResult r = run_command(fmt::format("{} --kernel blur3x3 --input {} --tile 8,8 --workers 1 --output {}/res.npy 2>&1",
                                                  mpirun(), (dir_ / "in.npy").string(), out));

  EXPECT_EQ(r.status, 2) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_EQ(lines[0],
            fmt::format("tilepool-mpi: error: rank 2 (node tpnode3): {0}/res.npy: cannot create a file in {0}: Read-only file system", out));
  EXPECT_TRUE(fs::is_empty(dir_ / "out"));
}

// The host pids of the ranks of the mpirun whose ranks carry `tag`, by rank.
std::map<int, pid_t> tagged_ranks(const std::string& tag) {
  std::map<int, pid_t> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (slurp(e.path() / "stat").find("(tilepool-mpi)") == std::string::npos) continue;
    const std::string env = slurp(e.path() / "environ");
    if (env.find("TILEPOOL_TEST_TAG=" + tag + '\0') == std::string::npos) continue;
    const auto at = env.find("OMPI_COMM_WORLD_RANK=");
    if (at != std::string::npos) pids[std::atoi(env.c_str() + at + 21)] = static_cast<pid_t>(std::stol(name));
  }
  return pids;
}

// What a stopped job can leave, per phase: the job is started, stopped the moment it reaches
// `phase`, then either mpirun gets SIGINT (Ctrl-C) or one rank SIGKILL.
enum class Stop { ctrl_c, kill_rank };

struct StopCase {
  std::string phase;  // "compute": a worker hangs on a tile; "write": the output's temporary exists
  Stop stop;
};

class MpiNodesStopTest : public MpiNodesTest, public ::testing::WithParamInterface<StopCase> {};

TEST_P(MpiNodesStopTest, StoppedJobLeavesNothingTheNextRunOrGcDoesNotRemove) {
  const StopCase c = GetParam();
  write_input(dir_ / "in.npy", 256, 256);
  fs::create_directories(dir_ / "out");
  const fs::path out = dir_ / "out" / "res.npy";
  const std::string tag = testing::unique_name("stop");
  // 16 tiles, 5, 5 and 6 per node. In the compute case every node's worker stops (SIGSTOP) at
  // the second tile of its block.
  // The hook is in the test-only worker (tests/fault_injection/).
  const std::string fault = c.phase == "compute" ? fmt::format("-x TILEPOOL_FAULT=hang:1 -x TILEPOOL_WORKER={}/tilepool-worker-faults", kBin) : "";
  const std::string cmd = fmt::format("{} --kernel blur3x3 --input {} --tile 64,64 --workers 1 --output {} > {} 2>&1", mpirun(tag, fault),
                                      (dir_ / "in.npy").string(), out.string(), (dir_ / "log").string());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::map<int, pid_t> ranks;
  for (int i = 0; i < 400 && ranks.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    ranks = tagged_ranks(tag);
  }
  ASSERT_EQ(ranks.size(), 3u) << slurp(dir_ / "log");
  if (c.phase == "write") {
    // Rank 0's temporary has its full size once the write phase began; stopping rank 2 then
    // holds ranks 0 and 1 inside MPI-IO's collective open or write.
    bool seen = false;
    for (int i = 0; i < 20000 && !seen; ++i) {
      for (const auto& e : fs::directory_iterator(dir_ / "out")) {
        std::error_code ec;
        if (e.path().filename().string().starts_with(".res.npy.tilepool-tpnode1-") && fs::file_size(e.path(), ec) > 1) seen = true;
      }
      if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    ASSERT_TRUE(seen) << slurp(dir_ / "log");
    ::kill(ranks[2], SIGSTOP);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // every rank is where the phase holds it

  const auto t_stop = Clock::now();
  if (c.stop == Stop::ctrl_c) {
    ASSERT_EQ(::kill(child, SIGINT), 0);  // child is `timeout`, which passes SIGINT to mpirun
  } else {
    // The rank inside the phase: the one computing, or one of those inside MPI-IO.
    const int victim = c.phase == "write" ? 1 : 2;
    ASSERT_EQ(::kill(ranks[victim], SIGKILL), 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // The job stopped on every node within seconds: mpirun is done, and no rank of it is left.
  for (int i = 0; i < 200 && !tagged_ranks(tag).empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  const double stop_seconds = std::chrono::duration<double>(Clock::now() - t_stop).count();
  EXPECT_TRUE(tagged_ranks(tag).empty()) << "ranks still running " << stop_seconds << " s after the stop";
  EXPECT_LT(stop_seconds, 10.0) << slurp(dir_ / "log");

  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir_ / "log");
  EXPECT_FALSE(fs::exists(out));
  for (const std::string& name : extra_files({})) EXPECT_FALSE(name.ends_with(".lock")) << "MPI-IO lock file: " << name;
  // The next run on the same nodes sweeps what the stopped one left, and succeeds.
  const CommandResult next = run_command(fmt::format("{} --kernel blur3x3 --input {} --tile 64,64 --workers 1 --output {} 2>&1",
                                                     mpirun(), (dir_ / "in.npy").string(), out.string()));
  ASSERT_EQ(next.status, 0) << next.output;
  EXPECT_EQ(extra_files({"res.npy"}), std::vector<std::string>{}) << "left beside the output after the next run";
  for (const std::string& h : kHosts) {
    ASSERT_EQ(on_node(h, fmt::format("{}/tilepool gc >/dev/null", kBin)).status, 0);
    EXPECT_EQ(node_shm(h), "") << "left in " << h << "'s /dev/shm after the next run and gc";
  }
}

std::string stop_case_name(const ::testing::TestParamInfo<StopCase>& param_info) {
  return fmt::format("{}During{}", param_info.param.stop == Stop::ctrl_c ? "CtrlC" : "KilledRank",
                     param_info.param.phase == "write" ? "Write" : "Compute");
}

// Ctrl-C: mpirun alone gets SIGINT (Open MPI puts each remote-shell agent in a process group of
// its own) and orders the daemons to stop the job; each gives its rank SIGCONT, SIGTERM a second
// later, SIGKILL a second after that. The SIGCONT resumes the stopped worker or rank, and the
// job, now free to finish, used to finish and publish in that second; rank 0 now publishes only
// after MPI_Finalize's fence, which mpirun no longer releases (docs/mpi.md, "Failure").
INSTANTIATE_TEST_SUITE_P(Phases, MpiNodesStopTest,
                         ::testing::Values(StopCase{"compute", Stop::kill_rank}, StopCase{"write", Stop::kill_rank},
                                           StopCase{"compute", Stop::ctrl_c}, StopCase{"write", Stop::ctrl_c}),
                         stop_case_name);

}  // namespace
}  // namespace tilepool
