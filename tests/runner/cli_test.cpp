// The tilepool command line, run as a real process: exit statuses, one-line errors, JSON,
// the named-segment workflow, and that bad input leaves /dev/shm as it was.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "support/test_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/array_segment.hpp"

namespace tilepool {
namespace {

using testing::CommandResult;
using testing::run_command;
using testing::run_python;
using testing::TempDir;
using testing::unique_name;

const std::string kTilepool = std::string(TILEPOOL_BIN_DIR) + "/tilepool";

std::set<std::string> shm_entries() {
  std::set<std::string> s;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) s.insert(e.path().filename().string());
  return s;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + (dir_ / "a.npy").string() + "', np.arange(365*16*16, dtype=np.float64).reshape(365,16,16))\n"
                         "np.save('" + (dir_ / "b.npy").string() + "', np.ones((365,16,16)))\n"
                         "np.save('" + (dir_ / "i.npy").string() + "', np.arange(12, dtype=np.int32).reshape(3,4))\n")
                  .status,
              0);
  }
  std::string path(const char* name) const { return (dir_ / name).string(); }

  /// Runs tilepool with `args`; expects exit 2, a single "tilepool: error:" line naming
  /// `mention`, and no new /dev/shm entry.
  void expect_usage_error(const std::string& args, const std::string& mention) {
    const auto before = shm_entries();
    const auto r = run_command(kTilepool + " " + args + (args.starts_with("run ") ? " --no-progress" : ""));
    EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
    EXPECT_TRUE(r.output.starts_with("tilepool: error: ")) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_NE(r.output.find(mention), std::string::npos) << "expected '" << mention << "' in: " << r.output;
    // Other tests may run in parallel: a leak is a new job segment whose owner (the tilepool
    // process that just exited) is gone.
    for (const auto& name : shm_entries()) {
      if (before.contains(name)) continue;
      const auto owner = parse_job_segment_name(name);
      EXPECT_FALSE(owner && !owner_alive(*owner)) << args << " left /dev/shm/" << name;
    }
  }

  TempDir dir_;
};

TEST_F(CliTest, RunWritesTheSumOfTwoFiles) {
  const auto r = run_command(kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("out.npy") + " -t 4,4 --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto check = run_python("import numpy as np\n"
                                "a=np.load('" + path("a.npy") + "'); o=np.load('" + path("out.npy") + "')\n"
                                "print('OK' if np.array_equal(o, a+1) else 'FAIL')");
  EXPECT_EQ(check.output, "OK\n");
}

TEST_F(CliTest, JsonReportHasEveryDesignField) {
  const auto r = run_command(kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("out.npy") + " -t 4,4 -w 2 --json --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["mode"], "share");
  EXPECT_EQ(j["kernel"], "add");
  EXPECT_EQ(j["workers"], 2);
  EXPECT_EQ(j["tiles"], 16);
  EXPECT_EQ(j["shape"], nlohmann::json::array({365, 16, 16}));
  EXPECT_EQ(j["tile"], nlohmann::json::array({4, 4}));
  EXPECT_GT(j["wall_s"].get<double>(), 0.0);
  for (const char* phase : {"load_s", "spawn_s", "compute_s", "write_s"}) {
    ASSERT_TRUE(j["phases"].contains(phase)) << phase;
    EXPECT_GE(j["phases"][phase].get<double>(), 0.0) << phase;
  }
  EXPECT_GT(j["phases"]["spawn_s"].get<double>(), 0.0);
  EXPECT_GT(j["phases"]["compute_s"].get<double>(), 0.0);
  EXPECT_EQ(j["bytes_copied"], 0);
  // The runner and two workers map the inputs and output (3 x 730 KiB): PSS counts them.
  EXPECT_GT(j["peak_pss_bytes"].get<std::uint64_t>(), 3u * 747520u);
  EXPECT_EQ(j["retries"], 0);
}

TEST_F(CliTest, JsonReportsEachModesOwnSpawnAndCopyFigures) {
  for (const std::string mode : {"fork", "copy", "threads"}) {
    const auto r = run_command(kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " +
                               path("out.npy") + " -t 4,4 -w 2 --json --force --no-progress --mode " + mode);
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["mode"], mode);
    EXPECT_EQ(j["tiles"], 16);
    // fork forks its workers inside the job and copy spawns them: both take time; threads none.
    if (mode == "threads") {
      EXPECT_EQ(j["phases"]["spawn_s"].get<double>(), 0.0);
    } else {
      EXPECT_GT(j["phases"]["spawn_s"].get<double>(), 0.0) << mode;
    }
    // copy mode ships both inputs to the workers and the output back: 3 x 747,520 bytes.
    EXPECT_EQ(j["bytes_copied"].get<std::uint64_t>(), mode == "copy" ? 3u * 747520u : 0u) << mode;
  }
}

// What a command prints is part of its result: before, `--json >/dev/full` and `kernels
// >/dev/full` exited 0 with the report or listing lost.
TEST_F(CliTest, AFullStandardOutputFailsTheCommandWithOneLine) {
  for (const std::string& args : {"run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("out.npy") +
                                     " -t 4,4 --json --no-progress --force",
                                 std::string("kernels")}) {
    const auto r = run_command("{ " + kTilepool + " " + args + " >/dev/full; }");
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_EQ(r.output, "tilepool: error: writing to standard output: No space left on device\n") << args;
  }
}

// Before: `tilepool rm` of a running job's output segment exited 0 and the job then failed;
// of its control block, went unnoticed. A live process's job segment is refused (exit 2), and
// nothing is removed.
TEST_F(CliTest, RmRefusesASegmentOfARunningJobAndRemovesNothing) {
  const std::string live = job_segment_name("out");  // this test process's: alive
  const std::string named = fmt::format("tptest-rm-live-{}", ::getpid());
  ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " " + named).status, 0);
  ASSERT_EQ(run_command("echo x > /dev/shm/" + live).status, 0);
  const auto r = run_command(kTilepool + " rm " + named + " " + live);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(r.output, fmt::format("tilepool: error: segment '{}' belongs to running process {} (a job's own segment: it is "
                                  "removed when that job ends; tilepool gc removes those of processes that are gone)\n",
                                  live, ::getpid()));
  EXPECT_TRUE(std::filesystem::exists("/dev/shm/" + named)) << "removed although the command was refused";
  EXPECT_TRUE(std::filesystem::exists("/dev/shm/" + live));
  for (const std::string& n : {live, named}) std::filesystem::remove("/dev/shm/" + n);
}

// Before: in a file:DIR store, `tilepool rm NAME` removed any file of the user's under NAME.
// It removes what `tilepool ls` shows (arrays and job segments) and refuses the rest, removing
// nothing.
TEST_F(CliTest, RmInADirectoryStoreRemovesOnlySegments) {
  const std::string store = path("store");
  std::filesystem::create_directory(store);
  ASSERT_EQ(run_command("echo mine > " + store + "/notes.txt").status, 0);
  ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " arr --backing file:" + store).status, 0);
  auto r = run_command(kTilepool + " rm arr notes.txt --backing file:" + store);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_EQ(r.output, "tilepool: error: 'notes.txt' in " + store +
                          " is not a segment (neither an NPY array nor a tilepool job's segment); not removing it\n");
  EXPECT_EQ(run_command("cat " + store + "/notes.txt").output, "mine\n");
  EXPECT_TRUE(std::filesystem::exists(store + "/arr")) << "removed although the command was refused";
  // Every refusal comes before any removal (a directory used to be refused after arr had gone).
  std::filesystem::create_directory(store + "/d");
  r = run_command(kTilepool + " rm arr d --backing file:" + store);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(std::filesystem::exists(store + "/arr")) << "removed although the command was refused";
  r = run_command(kTilepool + " rm arr --backing file:" + store);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(store + "/arr"));
}

// A segment truncated by hand (`truncate -s 0`, numpy's open(..., 'wb') onto it) is still the
// user's to remove, in /dev/shm and in a file:DIR store.
TEST_F(CliTest, RmRemovesASegmentTruncatedByHand) {
  const std::string store = path("store");
  std::filesystem::create_directory(store);
  const std::string name = fmt::format("tptest-rm-truncated-{}", ::getpid());
  for (const std::string& backing : {std::string("shm"), "file:" + store}) {
    for (const char* size : {"0", "3", "200"}) {
      ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " " + name + " --backing " + backing).status, 0);
      const std::string file = backing == "shm" ? "/dev/shm/" + name : store + "/" + name;
      ASSERT_EQ(run_command(std::string("truncate -s ") + size + " " + file).status, 0);
      const auto r = run_command(kTilepool + " rm " + name + " --backing " + backing);
      EXPECT_EQ(r.status, 0) << backing << ", " << size << " bytes: " << r.output;
      EXPECT_FALSE(std::filesystem::exists(file)) << backing << ", " << size << " bytes";
      std::filesystem::remove(file);
    }
  }
}

TEST_F(CliTest, ExistingOutputFileIsNotOverwrittenWithoutForce) {
  const auto out = path("out.npy");
  ASSERT_EQ(run_command("echo precious > " + out).status, 0);
  expect_usage_error("run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + out + " -t 4,4", "--force");
  EXPECT_EQ(run_command("cat " + out).output, "precious\n");
  EXPECT_EQ(run_command(kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + out + " -t 4,4 --force --no-progress").status, 0);
  EXPECT_NE(run_command("cat " + out).output, "precious\n");
}

TEST_F(CliTest, BadInputIsAOneLineErrorWithExitTwoAndLeavesShmUnchanged) {
  const std::string a = path("a.npy"), b = path("b.npy"), out = path("o.npy");
  ASSERT_EQ(run_command("echo notnumpy > " + path("bad.npy")).status, 0);
  ASSERT_EQ(run_command("head -c 200 " + a + " > " + path("trunc.npy")).status, 0);
  expect_usage_error("run -k add -i " + path("missing.npy") + " -i " + b + " -o " + out + " -t 4,4", "missing.npy");
  expect_usage_error("run -k add -i " + path("bad.npy") + " -i " + b + " -o " + out + " -t 4,4", "not an NPY file");
  expect_usage_error("run -k add -i " + path("trunc.npy") + " -i " + b + " -o " + out + " -t 4,4", "truncated");
  expect_usage_error("run -k nope -i " + a + " -o " + out + " -t 4,4", "unknown kernel 'nope'");
  expect_usage_error("run -k add -i " + a + " -o " + out + " -t 4,4", "add takes 2 inputs, got 1");
  expect_usage_error("run -k add -i " + a + " -i " + path("i.npy") + " -o " + out + " -t 4,4", "int32");
  expect_usage_error("run -k matmul -i " + a + " -i " + b + " -o " + out + " -t 4,4", "matmul");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 0,4", "--tile 0,4: '0' is not a positive tile extent");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,x", "--tile 4,x: 'x' is not a positive tile extent");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 99999999999999999999,4",
                     "--tile 99999999999999999999,4: tile extent 99999999999999999999 is out of range: expected at most 9223372036854775807");
  // A line break in any text the user gave stays one line of message (a kernel, a segment name,
  // an option's value: they were printed raw, over several lines).
  expect_usage_error("run -k \"$(printf 'x\\ny')\" -i " + a + " -o " + out + " -t 4,4", "unknown kernel 'x\\ny'");
  expect_usage_error("run -k add -i \"shm:$(printf 'x\\ny')\" -i " + b + " -o " + out + " -t 4,4", "x\\ny");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,4 --workers \"$(printf '2\\n')x\"", "--workers");
  // A line break in a value stays one line of message, escaped (it was printed raw).
  expect_usage_error("run -k add_scalar -i " + a + " -o " + out + " -t 4,4 -p \"$(printf 'value=1\\n2')\"",
                     "--param value=1\\n2: parameter 'value=1\\n2': a value cannot hold a line break");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 1,1,1,4", "--tile");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,4 -w 5000", "--workers");
  expect_usage_error("run -k add_scalar -i " + a + " -o " + out + " -t 4,4 -p value", "--param");
  expect_usage_error("run -k add_scalar -i " + a + " -o " + out + " -t 4,4 -p value=abc", "value=abc");
  expect_usage_error("run -k add_scalar -i " + path("i.npy") + " -o " + out + " -t 4,4 -p value=2.5",
                     "add_scalar: parameter value=2.5 does not fit int32 (expected an integer in its range)");
  expect_usage_error("run -k add -i shm:" + unique_name("absent") + " -i " + b + " -o " + out + " -t 4,4", "does not exist");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,4 --mode sideways",
                     "--mode sideways: not a mode (expected share, fork, copy or threads)\n");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,4 --backing tape", "--backing tape: unknown backing 'tape'");
  expect_usage_error("ls --backing tape", "--backing tape: unknown backing 'tape'");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o shm:bad/name -t 4,4", "invalid");
  expect_usage_error("run -k add -i " + a + " -i " + b + " -o " + out + " -t 4,4 --frobnicate", "frobnicate");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(CliTest, NamedSegmentWorkflowPutRunLsGetRm) {
  const std::string a = unique_name("a"), b = unique_name("b"), sum = unique_name("sum");
  ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " " + a).status, 0);
  ASSERT_EQ(run_command(kTilepool + " put " + path("b.npy") + " " + b).status, 0);
  const auto r = run_command(kTilepool + " run -k add -i shm:" + a + " -i shm:" + b + " -o shm:" + sum + " -t 4,4 --no-progress");
  ASSERT_EQ(r.status, 0) << r.output;
  // The named output outlives the run and numpy reads it in place.
  const auto check = run_python("import numpy as np\n"
                                "o=np.load('/dev/shm/" + sum + "', mmap_mode='r'); a=np.load('" + path("a.npy") + "')\n"
                                "print('OK' if np.array_equal(o, a+1) else 'FAIL')");
  EXPECT_EQ(check.output, "OK\n");
  const auto ls = run_command(kTilepool + " ls");
  EXPECT_NE(ls.output.find(sum), std::string::npos);
  EXPECT_NE(ls.output.find("float64 (365, 16, 16)"), std::string::npos);
  // Running again into the same name is refused; --force replaces it.
  expect_usage_error("run -k add -i shm:" + a + " -i shm:" + b + " -o shm:" + sum + " -t 4,4", "already exists");
  ASSERT_EQ(run_command(kTilepool + " get " + sum + " " + path("sum.npy")).status, 0);
  EXPECT_EQ(run_python("import numpy as np\nprint(np.load('" + path("sum.npy") + "')[1,2,3])").output, "292.0\n");
  // Again onto the file it wrote: refused, naming the remedy (before: "already exists" alone).
  expect_usage_error("get " + sum + " " + path("sum.npy"), "already exists (pass --force to overwrite)");
  EXPECT_EQ(run_command(kTilepool + " get --force " + sum + " " + path("sum.npy")).status, 0);
  EXPECT_EQ(run_command(kTilepool + " rm " + a + " " + b + " " + sum).status, 0);
  EXPECT_FALSE(segment_exists(a));
  EXPECT_FALSE(segment_exists(sum));
  expect_usage_error("rm " + a, "no such segment");
}

TEST_F(CliTest, PutRefusesAnExistingName) {
  const std::string a = unique_name("a");
  ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " " + a).status, 0);
  expect_usage_error("put " + path("b.npy") + " " + a, "already exists");
  remove_segment(a);
  // A name of a job segment's form: gc would remove it once no process had that pid (before:
  // accepted, as put's name and as a run's shm: output).
  const std::string job_like = "tilepool-999999999-1-0123456789abcdef-out";
  expect_usage_error("put " + path("a.npy") + " " + job_like, "has the form of a job's own segment names");
  expect_usage_error("run -k negate -i " + path("a.npy") + " -o shm:" + job_like + " -t 4,4",
                     "has the form of a job's own segment names");
  EXPECT_FALSE(segment_exists(job_like));
}

TEST_F(CliTest, GcRemovesOnlyDeadOwnersJobSegments) {
  // A job segment whose owner is gone: a child's pid and start time, after it exited.
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  const auto start = process_start_time(child);
  ASSERT_TRUE(start.has_value());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const std::string stale = "tilepool-" + std::to_string(child) + "-" + std::to_string(*start) + "-0123456789abcdef-in0";
  // In a store of this test's own (a file backing): a `tilepool run` of a test running beside
  // this one sweeps dead owners' leftovers from /dev/shm before this gc could.
  const std::filesystem::path store = dir_ / "store";
  std::filesystem::create_directory(store);
  const Backing backing = Backing::parse("file:" + store.string());
  const std::string flag = " --backing file:" + store.string();
  Segment dead = Segment::create(stale, 64, backing);
  dead.release_name();
  Segment live = Segment::create(job_segment_name("in0"), 64, backing);  // ours, alive
  const std::string named = unique_name("named");
  ArraySegment user = ArraySegment::create(named, DType::float64, {4}, backing);

  EXPECT_NE(run_command(kTilepool + " ls" + flag).output.find("stale"), std::string::npos);
  const auto r = run_command(kTilepool + " gc" + flag);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.output.find("removed " + stale), std::string::npos) << r.output;
  EXPECT_FALSE(segment_exists(stale, backing));
  EXPECT_TRUE(segment_exists(live.name(), backing));
  EXPECT_TRUE(segment_exists(named, backing));
}

TEST_F(CliTest, ProgressBarAppearsOnATerminalAndNowhereElse) {
  const std::string run = kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -t 4,4 --force -o ";
  // script(1) gives the run a pseudo-terminal as stderr.
  const auto tty = run_command("script -qec '" + run + path("o1.npy") + "' /dev/null");
  ASSERT_EQ(tty.status, 0) << tty.output;
  EXPECT_NE(tty.output.find("16/16 tiles"), std::string::npos) << tty.output;
  const auto piped = run_command(run + path("o2.npy"));
  ASSERT_EQ(piped.status, 0) << piped.output;
  EXPECT_EQ(piped.output.find("tiles/s"), std::string::npos) << piped.output;
  const auto tty_off = run_command("script -qec '" + run + path("o3.npy") + " --no-progress' /dev/null");
  EXPECT_EQ(tty_off.output.find("tiles/s"), std::string::npos) << tty_off.output;
}

TEST_F(CliTest, KernelsListsEveryKernelWithArityAndDtypes) {
  const auto r = run_command(kTilepool + " kernels");
  ASSERT_EQ(r.status, 0);
  for (const char* k : {"add ", "negate", "square", "add_scalar", "blur3x3", "matmul", "sum"}) {
    EXPECT_NE(r.output.find(k), std::string::npos) << k;
  }
  EXPECT_NE(r.output.find("float32, float64"), std::string::npos);
}

TEST_F(CliTest, DemoChecksEveryModeAgainstTheReference) {
  const auto r = run_command(kTilepool + " demo --workers 2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("share    ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("threads  ok"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("WRONG"), std::string::npos) << r.output;
}

TEST_F(CliTest, BadOutputPathsAreFoundBeforeAnyWork) {
  expect_usage_error("run -k negate -i " + path("a.npy") + " -o /no/such/dir/out.npy -t 4,4", "/no/such/dir");
  expect_usage_error("run -k negate -i " + path("a.npy") + " -o " + dir_.path().string() + " -t 4,4 --force", "is a directory");
  if (::geteuid() != 0) {  // root writes anywhere
    std::filesystem::create_directory(dir_ / "ro");
    std::filesystem::permissions(dir_ / "ro", std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    expect_usage_error("run -k negate -i " + path("a.npy") + " -o " + (dir_ / "ro" / "out.npy").string() + " -t 4,4", "cannot write");
    expect_usage_error("run -k negate -i " + path("a.npy") + " -o " + path("n.npy") + " -t 4,4 --backing file:" + (dir_ / "ro").string(),
                       "cannot create segments");
  }
}

TEST_F(CliTest, ZeroDimensionalArrayIsAnInputWithoutTileInEveryMode) {
  const std::string total = unique_name("total0d");
  const std::string neg = unique_name("neg0d");
  ASSERT_EQ(run_command(kTilepool + " run -k sum -i " + path("i.npy") + " -o shm:" + total + " -t 2,2 --no-progress").status, 0);
  for (const std::string mode : {"share", "fork", "copy", "threads"}) {
    auto r = run_command(kTilepool + " run -k negate -i shm:" + total + " -o shm:" + neg + " --force --no-progress -m " + mode);
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    EXPECT_EQ(run_python("import numpy as np\nprint(int(np.load('/dev/shm/" + neg + "')))").output, "-66\n") << mode;
    r = run_command(kTilepool + " run -k sum -i shm:" + neg + " -o " + path("s.npy") + " --force --no-progress -m " + mode);
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    EXPECT_EQ(run_python("import numpy as np\nprint(int(np.load('" + path("s.npy") + "')))").output, "-66\n") << mode;
  }
  expect_usage_error("run -k negate -i " + path("i.npy") + " -o " + path("n.npy"), "--tile is required");
  (void)run_command(kTilepool + " rm " + total + " " + neg);
}

// What another user needs to run tilepool: the programs and our libraries, copied into a
// directory everyone may enter. The build tree may be where only root can go (a checkout in
// /root, mode 0700), and the loader then cannot open the libraries for nobody. The copies keep
// the install layout (bin/ beside lib/), so the copied runner library finds the copied worker;
// LD_LIBRARY_PATH comes before the build tree's RUNPATH.
class ProgramsForAnotherUser {
 public:
  ProgramsForAnotherUser() {
    namespace fs = std::filesystem;
    const fs::path build_bin = TILEPOOL_BIN_DIR;
    fs::create_directories(dir_ / "bin");
    fs::create_directories(dir_ / "lib");
    for (const char* exe : {"tilepool", "tilepool-worker"}) fs::copy_file(build_bin / exe, dir_ / "bin" / exe);
    for (const auto& e : fs::directory_iterator(build_bin.parent_path() / "lib")) {
      if (e.path().filename().string().starts_with("libtilepool_")) {
        fs::copy(e.path(), dir_ / "lib" / e.path().filename(), fs::copy_options::copy_symlinks);
      }
    }
    for (const auto& e : fs::recursive_directory_iterator(dir_.path())) {
      if (!e.is_symlink()) fs::permissions(e.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                                         fs::perms::others_read | fs::perms::others_exec);
    }
    fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                                     fs::perms::others_exec);
  }
  /// `tilepool` as a command prefix that works for any user.
  [[nodiscard]] std::string tilepool() const {
    return "env -u TILEPOOL_WORKER LD_LIBRARY_PATH=" + (dir_ / "lib").string() + " " + (dir_ / "bin" / "tilepool").string();
  }

 private:
  TempDir dir_;
};

TEST_F(CliTest, ReadOnlySegmentIsAnInputInEveryMode) {
  // Root may open a 0400 file for writing: run as nobody, who owns the segment but may only read it.
  const bool root = ::geteuid() == 0;
  std::optional<ProgramsForAnotherUser> copies;
  if (root) copies.emplace();
  const std::string as_user = root ? "setpriv --reuid=65534 --regid=65534 --clear-groups " + copies->tilepool() : kTilepool;
  const std::string ro = unique_name("ro");
  const std::string neg = unique_name("neg");
  ASSERT_EQ(run_command(kTilepool + " put " + path("i.npy") + " " + ro).status, 0);
  if (root) {
    ASSERT_EQ(::chown(("/dev/shm/" + ro).c_str(), 65534, 65534), 0);
  }
  ASSERT_EQ(::chmod(("/dev/shm/" + ro).c_str(), 0400), 0);
  for (const std::string mode : {"share", "fork", "copy", "threads"}) {
    const auto r = run_command(as_user + " run -k negate -i shm:" + ro + " -o shm:" + neg + " -t 2,2 --force --no-progress -m " + mode);
    EXPECT_EQ(r.status, 0) << mode << ": " << r.output;
    EXPECT_EQ(run_python("import numpy as np\nprint(np.array_equal(np.load('/dev/shm/" + neg + "'), -np.load('" + path("i.npy") + "')))").output,
              "True\n") << mode;
  }
  std::filesystem::remove("/dev/shm/" + ro);
  std::filesystem::remove("/dev/shm/" + neg);
}

// --- numeric options: one range check per flag, the same in every subcommand -------------

TEST_F(CliTest, WorkerCountOutOfRangeIsOneLineExitTwoInEverySubcommand) {
  const std::string run = "run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("o.npy") + " -t 4,4";
  for (const char* bad : {"4097", "-1", "100000000000"}) {
    expect_usage_error(run + " --workers " + bad, "--workers: " + std::string(bad) + " is out of range: expected 1 to 4096");
    // demo used to skip every mode, print four lines and crash on the empty table (exit 139).
    expect_usage_error(std::string("demo --workers ") + bad, "--workers: " + std::string(bad) + " is out of range: expected 1 to 4096");
  }
  expect_usage_error("demo --workers two", "--workers: 'two' is not a whole number of workers");
  EXPECT_FALSE(std::filesystem::exists(path("o.npy")));
}

TEST_F(CliTest, TileTimeoutOutOfRangeIsAReadableOneLineError) {
  const std::string run = "run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("o.npy") + " -t 4,4";
  for (const char* bad : {"-1", "inf", "1e12"}) {
    expect_usage_error(run + " --tile-timeout " + bad, "--tile-timeout: " + std::string(bad) + " is out of range: expected 0 (no timeout) to 1000000000 seconds");
  }
  expect_usage_error(run + " --tile-timeout nan", "--tile-timeout: 'nan' is not a number of seconds");
  // Before: 1e-400 was read as 0 (no timeout at all) and 0x10 as 16 seconds.
  expect_usage_error(run + " --tile-timeout 1e-400", "--tile-timeout: 1e-400 is out of range");
  expect_usage_error(run + " --tile-timeout 0x10", "--tile-timeout: '0x10' is not a number of seconds");
  // Not the largest double written out in full, as CLI11's NonNegativeNumber printed it.
  const auto r = run_command(kTilepool + " " + run + " --tile-timeout -1 --no-progress");
  EXPECT_EQ(r.output.find("1.79769"), std::string::npos) << r.output;
  EXPECT_LT(r.output.size(), 200u) << r.output;
}

TEST_F(CliTest, TileTimeoutIsRefusedInThreadsMode) {
  // A thread cannot be killed: the timeout would be silently ignored.
  expect_usage_error("run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("o.npy") +
                         " -t 4,4 -m threads --tile-timeout 2",
                     "--tile-timeout 2: threads mode cannot stop a worker that holds a tile too long (use a mode with "
                     "worker processes: share, fork or copy)");
  EXPECT_FALSE(std::filesystem::exists(path("o.npy")));
  // Without a timeout, and in the process modes with one, the same job runs.
  for (const std::string extra : {"-m threads", "-m share --tile-timeout 2", "-m fork --tile-timeout 2", "-m copy --tile-timeout 2"}) {
    const auto r = run_command(kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " + path("o.npy") +
                               " -t 4,4 -w 2 --force --no-progress " + extra);
    EXPECT_EQ(r.status, 0) << extra << ": " << r.output;
  }
}

TEST_F(CliTest, TooFewFileDescriptorsForTheWorkersSaysHowManyTheJobNeeds) {
  // `ulimit -n 48` sets the hard limit too: the runner cannot raise it for 100 workers' pipes
  // (256 tiles of 1x1: a worker for each of the 100).
  for (const std::string mode : {"share", "copy"}) {
    const auto r = run_command("ulimit -n 48 && " + kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") +
                               " -o " + path("o.npy") + " -t 1,1 -w 100 --no-progress -m " + mode);
    EXPECT_EQ(r.status, 2) << mode << ": " << r.output;
    EXPECT_TRUE(r.output.starts_with("tilepool: error: 100 " + mode + "-mode workers (2 each, 4 more while one starts, and "))
        << r.output;
    // The sum it states is the sum of its parts (before: "2 each, and 10 open now" needed 16).
    int open_now = -1, needed = -1;
    const auto at = r.output.find("while one starts, and ");
    ASSERT_NE(at, std::string::npos) << r.output;
    ASSERT_EQ(std::sscanf(r.output.c_str() + at, "while one starts, and %d open now) need %d", &open_now, &needed), 2) << r.output;
    EXPECT_EQ(needed, 100 * 2 + 4 + open_now) << r.output;
    EXPECT_NE(r.output.find("file descriptors"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("ulimit -n; hard limit 48"), std::string::npos) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    EXPECT_EQ(r.output.find("pipe"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(path("o.npy")));
  }
  // A soft limit below what the job needs is raised up to the hard limit: the job runs.
  const auto r = run_command("ulimit -Sn 48 && ulimit -Hn 4096 && " + kTilepool + " run -k add -i " + path("a.npy") + " -i " +
                             path("b.npy") + " -o " + path("o.npy") + " -t 1,1 -w 100 --no-progress");
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST_F(CliTest, ADescriptorLimitTooLowForTheRunnersOwnFilesSaysHowManyItNeeds) {
  // Before: limits of 4 to 9 failed at whichever open came first: "b.npy: cannot open: Too many
  // open files" (exit 1), or a pipe, a dup or the control block, saying "0 open".
  // (From 6: below that, a descriptor the test runner leaks into its children leaves the dynamic
  // loader no room to open tilepool's libraries, before tilepool runs at all.)
  for (int limit = 6; limit <= 8; ++limit) {
    SCOPED_TRACE(limit);
    // prlimit, not the shell's ulimit: dash then needs descriptors above 10 for the 2>&1.
    const std::string cap = "prlimit --nofile=" + std::to_string(limit) + ":" + std::to_string(limit) + " ";
    const auto r = run_command(cap + kTilepool + " run -k add -i " + path("a.npy") +
                               " -i " + path("b.npy") + " -o " + path("o.npy") + " -t 4,4 -w 1 --no-progress -m threads");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_EQ(r.output, "tilepool: error: the runner's own files (stdin, stdout, stderr, 2 inputs, the output, its "
                        "control block, and one to read /proc) need 9 file descriptors; this process may open " +
                        std::to_string(limit) + " (ulimit -n; hard limit " + std::to_string(limit) + "): raise the limit\n");
    EXPECT_FALSE(std::filesystem::exists(path("o.npy")));  // refused before any file or segment was made
  }
  // A limit with room for them runs (16, not 9: the test runner's inherited descriptors and a
  // sanitizer's runtime take some of the room too).
  const auto r = run_command("prlimit --nofile=16:16 " + kTilepool + " run -k add -i " + path("a.npy") + " -i " + path("b.npy") + " -o " +
                             path("o.npy") + " -t 4,4 -w 1 --no-progress -m threads");
  EXPECT_EQ(r.status, 0) << r.output;
}

// `tilepool ARGS` with only stdin, stdout and stderr open (no descriptor the test runner
// leaks) and a descriptor limit of `limit`, soft and hard.
CommandResult run_with_descriptor_limit(int limit, const std::string& args) {
  return run_command("/usr/bin/python3 -c 'import os, resource, sys; os.closerange(3, 65536); "
                     "resource.setrlimit(resource.RLIMIT_NOFILE, (" + std::to_string(limit) + ", " + std::to_string(limit) +
                     ")); os.execv(sys.argv[1], sys.argv[1:])' " + kTilepool + " " + args);
}

TEST_F(CliTest, ADescriptorLimitTooLowForGetOrPutSaysHowManyTheyNeedAndChangesNothing) {
  // Before: `get` at 5 published its file and then failed syncing the folder (exit 2), and
  // `put` at 4 said "a.npy: cannot open: Too many open files".
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a sanitizer's runtime needs descriptors of its own below these limits (UBSan could not read /proc at 4)";
#endif
  const std::string seg = fmt::format("tptest-fd-{}", ::getpid());
  ASSERT_EQ(run_command(kTilepool + " put " + path("a.npy") + " " + seg).status, 0);
  for (const int limit : {4, 5}) {
    SCOPED_TRACE(limit);
    const auto get = run_with_descriptor_limit(limit, "get " + seg + " " + path("got.npy"));
    EXPECT_EQ(get.status, 2) << get.output;
    EXPECT_EQ(get.output, fmt::format("tilepool: error: tilepool get's files (stdin, stdout, stderr, the segment, the new file and its "
                                      "folder) need 6 file descriptors; this process may open {} (ulimit -n; hard limit {}): "
                                      "raise the limit\n", limit, limit));
    EXPECT_FALSE(std::filesystem::exists(path("got.npy")));
    const auto put = run_with_descriptor_limit(limit, "put " + path("a.npy") + " " + seg + "-2");
    EXPECT_EQ(put.status, 2) << put.output;
    EXPECT_TRUE(put.output.starts_with("tilepool: error: tilepool put's files (stdin, stdout, stderr, the .npy file, the new "
                                       "segment and its folder) need 6 file descriptors")) << put.output;
    EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + seg + "-2"));
  }
  EXPECT_EQ(run_with_descriptor_limit(6, "get " + seg + " " + path("got.npy")).status, 0);
  EXPECT_EQ(run_with_descriptor_limit(6, "put " + path("a.npy") + " " + seg + "-2").status, 0);
  EXPECT_EQ(run_command(kTilepool + " rm " + seg + " " + seg + "-2").status, 0);
}

}  // namespace
}  // namespace tilepool

namespace tilepool {
namespace {

class CliWordsTest : public ::testing::Test {};

// CLI11 checks required options before unknown words: the mistyped word is what to name.
// Before: "--workers: At Most 1 required but received 2" (CLI11's words); `--tile-timeout nan`
// "is out of range"; `--param value=` "expected KEY=VALUE"; `value=+5` "not a finite number";
// `rm x x` removed x, then failed with "no such segment: x".
TEST_F(CliWordsTest, RepeatedOptionsNanEmptyParameterValuesPlusSignsAndRepeatedNamesSayWhatTheyAre) {
  const auto twice = run_command(kTilepool + " run -k add -i a.npy -i b.npy -o o.npy -t 4,4 --workers 2 --workers 3 2>&1");
  EXPECT_EQ(twice.status, 2);
  EXPECT_EQ(twice.output, "tilepool: error: --workers is given more than once (give it once; see tilepool run --help)\n");
  const auto nan = run_command(kTilepool + " run -k add -i a.npy -i b.npy -o o.npy -t 4,4 --tile-timeout nan 2>&1");
  EXPECT_EQ(nan.status, 2);
  EXPECT_NE(nan.output.find("'nan' is not a number of seconds"), std::string::npos) << nan.output;
  testing::TempDir dir;
  const std::string in = (dir.path() / "a.npy").string();
  const std::string out = (dir.path() / "o.npy").string();
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + in + "', np.ones((4, 4)))\n").status, 0);
  const auto empty = run_command(kTilepool + " run --no-progress -k add_scalar -i " + in + " -o " + out + " -t 2,2 --param value= 2>&1");
  EXPECT_EQ(empty.status, 2);
  EXPECT_NE(empty.output.find("parameter 'value=': the value is empty"), std::string::npos) << empty.output;
  const auto plus = run_command(kTilepool + " run --no-progress -k add_scalar -i " + in + " -o " + out + " -t 2,2 --param value=+5 2>&1");
  EXPECT_EQ(plus.status, 0) << plus.output;
  EXPECT_EQ(run_python("import numpy as np\nassert (np.load('" + out + "') == 6).all()\n").status, 0);
  const std::string seg = testing::unique_name("rmtwice");
  ASSERT_EQ(run_command(kTilepool + " put " + in + " " + seg).status, 0);
  const auto rm = run_command(kTilepool + " rm " + seg + " " + seg + " 2>&1");
  EXPECT_EQ(rm.status, 0) << rm.output;
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/" + seg));
}

TEST_F(CliWordsTest, UnknownSubcommandOrOptionIsNamedNotAMissingRequiredOne) {
  const auto frob = run_command(kTilepool + " frob 2>&1");
  EXPECT_EQ(frob.status, 2);
  EXPECT_EQ(frob.output,
            "tilepool: error: unknown subcommand 'frob': expected one of run, demo, put, get, ls, rm, gc, kernels "
            "(see tilepool --help)\n");
  const auto bogus = run_command(kTilepool + " run --bogus -k add 2>&1");
  EXPECT_EQ(bogus.status, 2);
  EXPECT_EQ(bogus.output, "tilepool: error: unknown option '--bogus' (see tilepool run --help)\n");
}

}  // namespace
}  // namespace tilepool
