// tilepool-mpi under a real mpirun: 2 and 3 ranks on this machine, every rank its own node
// (--rank-per-node), against single-machine `tilepool run` bit for bit, and the failure cases.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "mpi_test_text.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::run_command;
using testing::TempDir;

const std::string kBin = TILEPOOL_BIN_DIR;
const std::string kPlugins = TILEPOOL_TEST_PLUGIN_DIR;

// mpirun as CI runs it: as root, more ranks than cores, shared-memory transport only, quiet
// (Open MPI's own multi-line notices off). Under the asan preset, the ranks' LeakSanitizer
// skips Open MPI's own leaks (tests/lsan_mpi.supp); the variables do nothing in other builds.
std::string mpirun(int ranks) {
  return fmt::format("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
                     "OMPI_MCA_mca_base_component_disable_dlclose=1 "
                     "LSAN_OPTIONS=suppressions={}/tests/lsan_mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0 "
                     "mpirun --allow-run-as-root --oversubscribe --mca btl self,vader -q -np {} {}/tilepool-mpi run --rank-per-node",
                     TILEPOOL_SOURCE_DIR, ranks, kBin);
}

using testing::lines_of;
using testing::slurp;

// The JSON object a --json run printed last, or null (a test failure showing the output).
nlohmann::json json_of(const CommandResult& r) {
  const std::vector<std::string> lines = lines_of(r.output);
  try {
    if (!lines.empty()) return nlohmann::json::parse(lines.back());
  } catch (const nlohmann::json::exception&) {
  }
  ADD_FAILURE() << "no JSON object at the end of:\n" << r.output;
  return nlohmann::json::object();
}

// Random data (integers wrap, floats are not exact in binary) written as an .npy file.
void write_random_npy(const fs::path& path, DType dtype, const Shape& shape, unsigned seed) {
  const AnyArray a = allocate_array(dtype, shape, Sharing::private_to_process);
  std::mt19937 gen(seed);
  visit_dtype(dtype, [&]<class T>(std::type_identity<T>) {
    auto* p = reinterpret_cast<T*>(a.data());
    for (std::int64_t i = 0; i < a.size(); ++i) {
      if constexpr (std::is_same_v<T, bool>) {
        p[i] = (gen() & 1) != 0;
      } else if constexpr (std::is_floating_point_v<T>) {
        p[i] = static_cast<T>(static_cast<int>(gen() % 2001) - 1000) / T(7);
      } else {
        p[i] = static_cast<T>(gen());
      }
    }
  });
  npy::write_file(path, dtype, shape, std::span<const std::byte>(a.data(), a.bytes()));
}

// Job segments ("tilepool-<pid>-...") in /dev/shm whose owner is dead: what a run leaked.
// Segments of live processes (other tests, other users of the machine) are not ours to judge.
std::set<std::string> dead_owner_segments() {
  std::set<std::string> found;
  for (const std::string& name : testing::entries_with_prefix("tilepool-")) {
    const std::string rest = name.substr(9);
    const pid_t pid = static_cast<pid_t>(std::atol(rest.c_str()));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) found.insert(name);
  }
  return found;
}

struct MpiCase {
  std::string kernel;
  DType dtype;
  std::vector<Shape> inputs;
  std::string tile;
  std::string extra;  // more flags: --mode, --param, --plugin
};

std::vector<MpiCase> cases() {
  return {
      {"add", DType::float64, {{365, 16, 16}, {365, 16, 16}}, "4,4", ""},  // the seed workload
      {"add", DType::int16, {{37, 41}, {37, 41}}, "16", "--mode fork"},
      {"negate", DType::float32, {{3, 31, 17}}, "4,4", "--mode copy"},
      {"square", DType::int32, {{64, 33}}, "10,10", "--mode threads"},
      {"add_scalar", DType::float64, {{365, 16, 16}}, "5,3", "--param value=5.5"},
      {"blur3x3", DType::float64, {{3, 33, 41}}, "8,8", ""},
      {"blur3x3", DType::uint8, {{19, 23}}, "5,7", "--mode copy"},
      {"matmul", DType::float64, {{45, 30}, {30, 37}}, "16,8", ""},
      {"matmul", DType::float32, {{64, 64}, {64, 64}}, "32,32", "--mode fork"},
      {"sum", DType::float64, {{7, 50, 70}}, "16,16", ""},
      {"sum", DType::int32, {{50, 70}}, "9,11", "--mode copy"},
      {"tp_cross5", DType::float64, {{2, 23, 19}}, "6,5", fmt::format("--plugin {}/libtptest_kernels.so", kPlugins)},
  };
}

std::string case_name(const MpiCase& c) {
  std::string s = fmt::format("{} {} tile {}", c.kernel, dtype_name(c.dtype), c.tile);
  for (const Shape& in : c.inputs) s += fmt::format(" {}", format_shape(in));
  return fmt::format("{} {}", s, c.extra);
}

class MpiRunTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { before_ = dead_owner_segments(); }
  void TearDown() override {
    std::set<std::string> leaked;
    for (const std::string& s : dead_owner_segments()) {
      if (before_.count(s) == 0) leaked.insert(s);
    }
    std::string names;
    for (const std::string& s : leaked) names += fmt::format(" {}", s);
    EXPECT_TRUE(leaked.empty()) << "job segments of dead processes that appeared during the test:" << names;
  }

  // Inputs for `c` in dir; returns the --input flags.
  std::string make_inputs(const MpiCase& c, unsigned seed) {
    std::string flags;
    for (std::size_t i = 0; i < c.inputs.size(); ++i) {
      const fs::path p = dir_ / fmt::format("in{}-{}.npy", seed, i);
      write_random_npy(p, c.dtype, c.inputs[i], seed + static_cast<unsigned>(i));
      flags += fmt::format(" --input {}", p.string());
    }
    return flags;
  }

  TempDir dir_;
  std::set<std::string> before_;
};

TEST_P(MpiRunTest, EveryKernelWritesTheFileTilepoolRunWritesBitForBit) {
  const int ranks = GetParam();
  unsigned seed = 11;
  std::vector<std::string> outputs;
  for (const MpiCase& c : cases()) {
    SCOPED_TRACE(case_name(c));
    const std::string inputs = make_inputs(c, seed++);
    const fs::path ref = dir_ / fmt::format("ref-{}.npy", outputs.size());
    const fs::path out = dir_ / fmt::format("out-{}.npy", outputs.size());
    const std::string flags = fmt::format("--kernel {}{} --tile {} --workers 2 {}", c.kernel, inputs, c.tile, c.extra);
    const CommandResult single = run_command(fmt::format("{}/tilepool run {} --output {}", kBin, flags, ref.string()));
    ASSERT_EQ(single.status, 0) << single.output;

    const CommandResult multi = run_command(fmt::format("{} {} --output {}", mpirun(ranks), flags, out.string()));

    ASSERT_EQ(multi.status, 0) << multi.output;
    EXPECT_TRUE(slurp(out) == slurp(ref)) << out << " differs from " << ref;
    outputs.push_back(out.string());
  }
  // numpy reads what MPI-IO wrote.
  std::string files;
  for (const std::string& o : outputs) files += fmt::format("'{}',", o);
  const CommandResult py = testing::run_python(fmt::format("import numpy\nfor f in [{}]: numpy.load(f)\nprint('ok')", files));
  EXPECT_EQ(py.status, 0) << py.output;
}

TEST_P(MpiRunTest, JsonCountsEachNodesTilesAndOnlyTheBytesItsTilesRead) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {256, 256}, 3);
  const fs::path out = dir_ / "out.npy";

  const CommandResult r = run_command(fmt::format("{} --kernel blur3x3 --input {} --tile 32,32 --workers 1 --json --output {} 2>&1",
                                                  mpirun(ranks), in.string(), out.string()));

  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = json_of(r);
  EXPECT_EQ(j["nodes"], ranks);
  EXPECT_EQ(j["tiles"], 64);
  ASSERT_EQ(j["per_node"].size(), static_cast<std::size_t>(ranks));
  std::int64_t tiles = 0;
  std::uint64_t read = 0;
  for (const auto& node : j["per_node"]) {
    tiles += node["tiles"].get<std::int64_t>();
    read += node["bytes_read"].get<std::uint64_t>();
    // Its block of rows and a halo row on each side: less than the whole input.
    EXPECT_LT(node["bytes_read"].get<std::uint64_t>(), 256u * 256u * 8u);
    EXPECT_LE(std::abs(node["tiles"].get<std::int64_t>() - 64 / ranks), 1);
  }
  EXPECT_EQ(tiles, 64);
  EXPECT_GE(read, 256u * 256u * 8u);  // every byte by some node, halo rows twice
  // Each node's job segments are gone (named after its leader's pid).
  for (const auto& node : j["per_node"]) {
    EXPECT_TRUE(testing::entries_with_prefix(fmt::format("tilepool-{}-", node["pid"].get<int>())).empty());
  }
  EXPECT_EQ(j["bytes_read"], read);
  EXPECT_EQ(j["bytes_moved_between_ranks"], 0);
}

TEST_P(MpiRunTest, ShmInputIsSentFromRankZeroAndCounted) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float32, {40, 30}, 5);
  const std::string seg = testing::unique_name("mpiin");
  const CommandResult put = run_command(fmt::format("{}/tilepool put {} {}", kBin, in.string(), seg));
  ASSERT_EQ(put.status, 0) << put.output;
  const fs::path ref = dir_ / "ref.npy";
  const fs::path out = dir_ / "out.npy";
  const CommandResult single =
      run_command(fmt::format("{}/tilepool run --kernel blur3x3 --input {} --tile 8,8 --output {}", kBin, in.string(), ref.string()));
  ASSERT_EQ(single.status, 0) << single.output;

  const CommandResult r = run_command(fmt::format("{} --kernel blur3x3 --input shm:{} --tile 8,8 --workers 1 --json --output {} 2>&1",
                                                  mpirun(ranks), seg, out.string()));

  (void)run_command(fmt::format("{}/tilepool rm {}", kBin, seg));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(slurp(out) == slurp(ref));
  const auto j = json_of(r);
  SCOPED_TRACE(r.output);
  EXPECT_GT(j["bytes_moved_between_ranks"].get<std::uint64_t>(), 0u);
  EXPECT_LT(j["bytes_moved_between_ranks"].get<std::uint64_t>(), 40u * 30u * 4u);
  EXPECT_EQ(j["bytes_read"], 0);
}

TEST_P(MpiRunTest, KernelFailureOnOneNodeIsOneLineNamingItsRankAndNoOutput) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {40, 8}, 7);
  const fs::path out = dir_ / "out.npy";
  // 10 tiles of 4 rows; row 38 is in the last tile, which the last node runs.
  const CommandResult r = run_command(fmt::format(
      "{} --plugin {}/libtptest_kernels.so --kernel tp_throw --param row=38 --param col=0 --input {} --tile 4,8 --workers 2 "
      "--output {} 2>&1",
      mpirun(ranks), kPlugins, in.string(), out.string()));

  EXPECT_EQ(r.status, 1) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_TRUE(lines[0].starts_with(fmt::format("tilepool-mpi: error: rank {} (node ", ranks - 1))) << lines[0];
  EXPECT_NE(lines[0].find("tp_throw: element (38, 0) is cursed"), std::string::npos) << lines[0];
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_.path()), fs::directory_iterator()), 1);  // no temporary either
}

// Before: exit 2 (tilepool run's copy mode exits 1 for the same throw: a kernel's failure, not
// the user's input).
TEST_P(MpiRunTest, InputRegionThatThrowsFailsTheJobWithExit1InOneLine) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {40, 8}, 7);
  const fs::path out = dir_ / "out.npy";
  const CommandResult r = run_command(fmt::format(
      "{} --plugin {}/libtptest_throwing.so --kernel tp_throws --param hook=input_region --param kind=int --input {} "
      "--tile 4,8 --workers 2 --output {} 2>&1",
      mpirun(ranks), kPlugins, in.string(), out.string()));
  EXPECT_EQ(r.status, 1) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_TRUE(lines[0].starts_with("tilepool-mpi: error: rank ")) << lines[0];
  EXPECT_NE(lines[0].find("tp_throws: input_region failed"), std::string::npos) << lines[0];
  EXPECT_FALSE(fs::exists(out));
}

// Threads mode runs kernels in the rank's own process: a kernel's exit() ends it with a line
// that names the rank and node, as every other tilepool-mpi error does (before: "tilepool:
// error: kernel ...", with no rank).
TEST_P(MpiRunTest, AKernelThatCallsExitInThreadsModeIsALineNamingItsRank) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {40, 8}, 7);
  const fs::path out = dir_ / "out.npy";
  const CommandResult r = run_command(fmt::format(
      "{} --plugin {}/libtptest_throwing.so --kernel tp_throws --param hook=tile --param kind=exit --input {} "
      "--tile 4,8 --workers 2 --mode threads --output {} 2>&1",
      mpirun(ranks), kPlugins, in.string(), out.string()));
  EXPECT_NE(r.status, 0) << r.output;
  bool named = false;
  for (const std::string& line : lines_of(r.output)) {
    EXPECT_FALSE(line.starts_with("tilepool: error:")) << line;
    named = named || (line.starts_with("tilepool-mpi: error: rank ") && line.find("kernel tp_throws called exit()") != std::string::npos);
  }
  EXPECT_TRUE(named) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

TEST_P(MpiRunTest, ExistingOutputIsKeptWithoutForceAndReplacedWithIt) {
  const int ranks = GetParam();
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {20, 20}, 9);
  const fs::path out = dir_ / "out.npy";
  { std::ofstream(out) << "precious"; }
  const std::string cmd = fmt::format("{} --kernel negate --input {} --tile 4,4 --workers 1 --output {}", mpirun(ranks),
                                      in.string(), out.string());

  const CommandResult refused = run_command(fmt::format("{} 2>&1", cmd));

  EXPECT_EQ(refused.status, 2) << refused.output;
  ASSERT_EQ(lines_of(refused.output).size(), 1u) << refused.output;
  EXPECT_EQ(lines_of(refused.output)[0], fmt::format("tilepool-mpi: error: {}: already exists (pass --force to overwrite)", out.string()));
  EXPECT_EQ(slurp(out), "precious");
  const CommandResult forced = run_command(fmt::format("{} --force 2>&1", cmd));
  EXPECT_EQ(forced.status, 0) << forced.output;
  EXPECT_TRUE(slurp(out).starts_with("\x93NUMPY"));
}

// Before: each leader judged the temporaries beside the output by kill(pid, 0), which a pid
// that a live process took over fools, and no sweep knew Open MPI's lock files named after a
// temporary (TEMPORARY-JOBID-PID.lock, from its "lockedfile" MPI-IO component).
TEST_P(MpiRunTest, TemporariesAndLocksOfDeadOwnersBesideTheOutputAreSweptAndALiveOwnersAreKept) {
  const fs::path in = dir_ / "in.npy";
  write_random_npy(in, DType::float64, {20, 20}, 9);
  const fs::path out = dir_ / "out.npy";
  const std::string lock = "-3735879681-4242.lock";
  // This process's pid with another start time: an owner that died, its pid now a live process's.
  const fs::path stale = hidden_temporary_path(dir_.path(), "out.npy", ProcessOwner{::getpid(), this_process().start_time + 1});
  const fs::path live = hidden_temporary_path(dir_.path(), "out.npy");  // this process's: alive
  const std::vector<fs::path> stale_files = {stale, stale.string() + lock};
  const std::vector<fs::path> live_files = {live, live.string() + lock};
  for (const auto& p : {stale_files[0], stale_files[1], live_files[0], live_files[1]}) std::ofstream(p) << "x";

  const CommandResult r = run_command(fmt::format("{} --kernel negate --input {} --tile 4,4 --workers 1 --output {} 2>&1",
                                                  mpirun(GetParam()), in.string(), out.string()));

  EXPECT_EQ(r.status, 0) << r.output;
  for (const auto& p : stale_files) EXPECT_FALSE(fs::exists(p)) << p;
  for (const auto& p : live_files) EXPECT_TRUE(fs::exists(p)) << p;
  for (const auto& p : live_files) fs::remove(p);
}

TEST_P(MpiRunTest, SegmentOutputIsRefusedInOneLine) {
  const CommandResult r = run_command(fmt::format("{} --kernel negate --input x.npy --tile 4 --output shm:{} 2>&1", mpirun(GetParam()),
                                                  testing::unique_name("mpiout")));

  EXPECT_EQ(r.status, 2) << r.output;
  ASSERT_EQ(lines_of(r.output).size(), 1u) << r.output;
  EXPECT_NE(r.output.find("a job across nodes writes one FILE.npy"), std::string::npos) << r.output;
}

INSTANTIATE_TEST_SUITE_P(Ranks, MpiRunTest, ::testing::Values(2, 3),
                         [](const auto& param_info) { return fmt::format("{}ranks", param_info.param); });

pid_t parent_of(pid_t pid) {
  const std::string stat = slurp(fmt::format("/proc/{}/stat", pid));
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

// The pids of the tilepool-mpi ranks that `ancestor` (the shell running mpirun, or mpirun)
// started, by MPI rank (from their environment).
std::map<int, pid_t> rank_pids(pid_t ancestor) {
  std::map<int, pid_t> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (slurp(e.path() / "stat").find("(tilepool-mpi)") == std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (parent_of(pid) != ancestor && parent_of(parent_of(pid)) != ancestor) continue;
    const std::string env = slurp(e.path() / "environ");
    const auto at = env.find("OMPI_COMM_WORLD_RANK=");
    if (at != std::string::npos) pids[std::atoi(env.c_str() + at + 21)] = pid;
  }
  return pids;
}

TEST(MpiKilledRankTest, SigkilledRankEndsTheJobWithNoOutputAndNothingLeftAfterSweep) {
  TempDir dir;
  const std::set<std::string> before = dead_owner_segments();
  const fs::path in = dir / "in.npy";
  write_random_npy(in, DType::float64, {64, 64}, 1);
  const fs::path out = dir / "out.npy";
  // Tile 9 (of 16) is rank 1's of 2: its worker stops there (SIGSTOP), so rank 1 is surely
  // mid-job when it is killed, while rank 0 has finished and waits for it.
  const std::string cmd = fmt::format("TILEPOOL_WORKER={}/tilepool-worker-faults TILEPOOL_FAULT=hang:9 {} --kernel blur3x3 --input {} --tile 16,16 --workers 2 --output {} "
                                      "> {} 2>&1",
                                      kBin, mpirun(2), in.string(), out.string(), (dir / "log").string());
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::map<int, pid_t> ranks;
  for (int i = 0; i < 200 && ranks.size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ranks = rank_pids(child);
  }
  ASSERT_EQ(ranks.size(), 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // both are in the job

  ASSERT_EQ(::kill(ranks[1], SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);

  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << slurp(dir / "log");
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".tilepool-"), std::string::npos) << e.path();
  }
  // Only the killed rank can have left segments; the next run's sweep (gc) removes them.
  for (const std::string& s : dead_owner_segments()) {
    if (before.count(s) == 0) {
      EXPECT_TRUE(s.starts_with(fmt::format("tilepool-{}-", ranks[1]))) << s;
    }
  }
  ASSERT_EQ(run_command(fmt::format("{}/tilepool gc", kBin)).status, 0);
  for (const std::string& s : dead_owner_segments()) EXPECT_TRUE(before.count(s) == 1) << "left after gc: " << s;
}

}  // namespace
}  // namespace tilepool
