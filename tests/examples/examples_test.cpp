// The teaching examples (examples/<pattern>/): each C++ program and its Python twin must exit
// 0, print the same "result:" line, print no resource-tracker warnings, and leave nothing of
// theirs in /dev/shm.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace tilepool {
namespace {

// One run of an example: its exit status, everything it printed, and its pid.
struct ExampleRun {
  int status = -1;
  std::string output;
  std::string pid;
};

// Runs `command` as the shell's own process (exec), so the example's pid is the shell's $$;
// the examples name their segments "tpex-<pid>-..." and the pool's "tilepool-<pid>-...".
ExampleRun run_example(const std::string& command) {
  const auto r = testing::run_command("echo example-pid=$$; exec " + command);
  ExampleRun run{r.status, r.output, {}};
  const std::string tag = "example-pid=";
  if (run.output.starts_with(tag)) {
    const auto eol = run.output.find('\n');
    run.pid = run.output.substr(tag.size(), eol - tag.size());
    run.output.erase(0, eol + 1);
  }
  return run;
}

// The lines of `output` that start with "result: ".
std::vector<std::string> result_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("result: ")) lines.push_back(line);
  }
  return lines;
}

std::set<std::string> shm_entries() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) names.insert(e.path().filename().string());
  return names;
}

// Entries of `after` not in `before` that belong to the example process `pid`.
std::vector<std::string> left_behind(const std::set<std::string>& before, const std::set<std::string>& after,
                                     const std::string& pid) {
  std::vector<std::string> left;
  for (const auto& name : after) {
    if (before.contains(name)) continue;
    if (name.starts_with("tpex-" + pid + "-") || name.starts_with("tilepool-" + pid + "-")) left.push_back(name);
  }
  return left;
}

// Runs an example and checks what every example promises on its own: exit 0, one result
// line, no resource-tracker warning, nothing left in /dev/shm. Returns the run.
ExampleRun checked_run(const std::string& what, const std::string& command) {
  const auto before = shm_entries();
  ExampleRun run = run_example(command);
  const auto after = shm_entries();

  EXPECT_EQ(run.status, 0) << what << " failed:\n" << run.output;
  EXPECT_FALSE(run.pid.empty()) << what << ": no pid line in:\n" << run.output;
  EXPECT_EQ(run.output.find("resource_tracker"), std::string::npos) << what << " printed a tracker warning:\n" << run.output;
  const auto left = left_behind(before, after, run.pid);
  EXPECT_TRUE(left.empty()) << what << " left in /dev/shm: " << ::testing::PrintToString(left);
  EXPECT_EQ(result_lines(run.output).size(), 1u) << what << " should print one result line:\n" << run.output;
  return run;
}

// checked_run, returning the result line.
std::string run_and_check(const std::string& what, const std::string& command) {
  const auto lines = result_lines(checked_run(what, command).output);
  return lines.empty() ? std::string() : lines.front();
}

std::string cpp_example(const std::string& pattern) { return std::string(TILEPOOL_BIN_DIR) + "/example-" + pattern; }
std::string python_example(const std::string& pattern) {
  return std::string(TILEPOOL_SOURCE_DIR) + "/examples/" + pattern + "/" + pattern + ".py";
}

class ExamplesTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(cpp_example(GetParam()))) {
      GTEST_SKIP() << cpp_example(GetParam()) << " is not built (configure with TILEPOOL_BUILD_EXAMPLES=ON)";
    }
    const auto numpy = testing::run_python("import numpy");
    ASSERT_EQ(numpy.status, 0) << "the Python twins need numpy for " TILEPOOL_PYTHON " (python3-numpy): " << numpy.output;
  }
};

TEST_P(ExamplesTest, CppAndPythonTwinsPrintTheSameResultAndLeaveNothingBehind) {
  const std::string pattern = GetParam();

  const std::string cpp = run_and_check("example-" + pattern, cpp_example(pattern));
  const std::string python = run_and_check(pattern + ".py", std::string(TILEPOOL_PYTHON) + " " + python_example(pattern));

  EXPECT_FALSE(cpp.empty());
  EXPECT_EQ(cpp, python) << "example-" << pattern << " and " << pattern << ".py disagree";
}

INSTANTIATE_TEST_SUITE_P(Patterns, ExamplesTest,
                         ::testing::Values("mp_array_lock", "raw_array", "pool_initializer", "fork_cow",
                                           "shared_memory_manager", "sharedarray_create_attach", "pitfalls",
                                           "seed_patterns"),
                         [](const auto& param_info) { return param_info.param; });

// The line of `output` that starts with `prefix`, or "" if there is none.
std::string line_starting(const std::string& output, const std::string& prefix) {
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(prefix)) return line;
  }
  return {};
}

// mp_array_lock kills (SIGKILL, for real) a child that holds the lock half-way through an update.
// Python's mp.Array lock then stays taken: acquire with a timeout gives up.
TEST(ExamplesLockTest, PythonLockStaysTakenAfterItsHolderIsKilled) {
  const std::string pattern = "mp_array_lock";

  const ExampleRun run = checked_run(pattern + ".py", std::string(TILEPOOL_PYTHON) + " " + python_example(pattern));
  const std::string died = line_starting(run.output, "owner died: ");

  ASSERT_FALSE(died.empty()) << run.output;
  EXPECT_NE(died.find("killed by SIGKILL"), std::string::npos) << died;
  EXPECT_NE(died.find("acquire(timeout=1) -> False"), std::string::npos) << died;
  EXPECT_NE(died.find("the 2048 of 4096 counters it half-updated"), std::string::npos) << died;
}

// The C++ twin's robust mutex hands the lock to the next locker with EOWNERDEAD; it repairs the
// half-done update, marks the mutex consistent, and the counters end right.
TEST(ExamplesLockTest, RobustMutexReportsItsKilledHolderAndTheNextLockerRepairsTheData) {
  const std::string pattern = "mp_array_lock";
  if (!std::filesystem::exists(cpp_example(pattern))) GTEST_SKIP() << cpp_example(pattern) << " is not built";

  const ExampleRun run = checked_run("example-" + pattern, cpp_example(pattern));
  const std::string died = line_starting(run.output, "owner died: ");

  ASSERT_FALSE(died.empty()) << run.output;
  EXPECT_NE(died.find("killed by SIGKILL"), std::string::npos) << died;
  EXPECT_NE(died.find("lock() -> EOWNERDEAD"), std::string::npos) << died;
  EXPECT_NE(died.find("repaired the 2048 of 4096 counters"), std::string::npos) << died;
  EXPECT_NE(died.find("every counter=4 right=yes"), std::string::npos) << died;
}

// The third twin of sharedarray_create_attach: the same workflow with the tilepool CLI.
TEST(ExamplesCliTest, SharedArrayWorkflowWithTheCliPrintsTheSameResult) {
  const std::string tilepool = std::string(TILEPOOL_BIN_DIR) + "/tilepool";
  const std::string pattern = "sharedarray_create_attach";
  if (!std::filesystem::exists(tilepool) || !std::filesystem::exists(cpp_example(pattern))) {
    GTEST_SKIP() << "needs the tilepool CLI and example-" << pattern;
  }
  const std::string script = std::string(TILEPOOL_SOURCE_DIR) + "/examples/" + pattern + "/cli.sh";

  const std::string cli = run_and_check("cli.sh", "env TILEPOOL_BIN=" TILEPOOL_BIN_DIR " TILEPOOL_PYTHON=" TILEPOOL_PYTHON
                                                  " /bin/sh " + script);
  const std::string cpp = run_and_check("example-" + pattern, cpp_example(pattern));

  EXPECT_FALSE(cli.empty());
  EXPECT_EQ(cli, cpp);
}

}  // namespace
}  // namespace tilepool
