// Kernel plugins (tests/plugins/, real shared libraries, real dlopen): the command line's
// --plugin, each refusal (one line, exit 2, nothing left in /dev/shm), and plugin kernels with
// the built-ins' guarantees in every mode: bitwise equal outputs, copy mode shipping exactly
// the declared input region, a kernel's exception failing the job with its message, and a warm
// share-mode pool loading a plugin it meets for the first time.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "support/test_support.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool {
namespace {

using testing::run_command;
using testing::run_python;
using testing::TempDir;

const std::string kTilepool = std::string(TILEPOOL_BIN_DIR) + "/tilepool";
std::string plugin(const char* name) { return std::string(TILEPOOL_TEST_PLUGIN_DIR) + "/lib" + name + ".so"; }

std::set<std::string> shm_entries() {
  std::set<std::string> s;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) s.insert(e.path().filename().string());
  return s;
}

class PluginCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_python("import numpy as np\n"
                         "np.save('" + path("a.npy") + "', np.arange(8*10, dtype=np.float64).reshape(8,10))\n")
                  .status,
              0);
  }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  std::string run_with(const std::string& plugin_path, const char* kernel = "add") const {
    return "run --no-progress --plugin " + plugin_path + " -k " + kernel + " -i " + path("a.npy") + " -i " + path("a.npy") +
           " -o " + path("out.npy") + " -t 4,4";
  }

  // A run of a one-input plugin kernel.
  std::string run_one(const std::string& plugin_path, const char* kernel) const {
    return "run --no-progress --plugin " + plugin_path + " -k " + kernel + " -i " + path("a.npy") + " -o " + path("out.npy") +
           " -t 4,4";
  }

  // Runs tilepool with `args`: exit 2, one "tilepool: error:" line naming each of `mentions`,
  // no output file, and no job segment left behind.
  void expect_refused(const std::string& args, std::initializer_list<std::string> mentions) {
    const auto before = shm_entries();
    const auto r = run_command(kTilepool + " " + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
    EXPECT_TRUE(r.output.starts_with("tilepool: error: plugin ")) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    for (const std::string& m : mentions) EXPECT_NE(r.output.find(m), std::string::npos) << "expected '" << m << "' in: " << r.output;
    EXPECT_FALSE(std::filesystem::exists(path("out.npy")));
    for (const auto& name : shm_entries()) {
      if (before.contains(name)) continue;
      const auto owner = parse_job_segment_name(name);
      EXPECT_FALSE(owner && !owner_alive(*owner)) << args << " left /dev/shm/" << name;
    }
  }
  // A copy of a test plugin in this test's folder, with `mode`.
  std::string copy_of(const char* name, const char* as, mode_t mode) const {
    const std::string to = path(as);
    std::filesystem::copy_file(plugin(name), to);
    EXPECT_EQ(::chmod(to.c_str(), mode), 0);
    return to;
  }

  TempDir dir_;
};

TEST_F(PluginCliTest, MissingFileIsRefused) { expect_refused(run_with(path("libnothere.so")), {"libnothere.so", "no such file"}); }

TEST_F(PluginCliTest, FileThatIsNotASharedLibraryIsRefused) {
  ASSERT_EQ(run_command("echo 'not a library' > " + path("libtext.so") + " && chmod 644 " + path("libtext.so")).status, 0);
  expect_refused(run_with(path("libtext.so")), {"libtext.so", "not a loadable shared library"});
  expect_refused(run_with(dir_.path().string()), {"not a regular file"});
}

TEST_F(PluginCliTest, AFifoGivenAsAPluginIsRefusedWithoutWaitingForAWriter) {
  // Before: opening it for reading waited for a writer, for good (a FIFO input was refused).
  ASSERT_EQ(::mkfifo(path("libfifo.so").c_str(), 0644), 0);
  expect_refused(run_with(path("libfifo.so")), {"libfifo.so", "not a regular file"});
  const auto r = run_command(kTilepool + " kernels --plugin " + path("libfifo.so"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("not a regular file"), std::string::npos) << r.output;
}

TEST_F(PluginCliTest, SharedLibraryWithoutEntryPointIsRefused) {
  expect_refused(run_with(plugin("tptest_no_entry")), {"libtptest_no_entry.so", "no entry point tilepool_plugin_entry"});
}

TEST_F(PluginCliTest, AbiVersionMismatchIsRefusedNamingBothVersions) {
  expect_refused(run_with(plugin("tptest_bad_abi")),
                 {"was built for plugin ABI 999; this tilepool needs " + std::to_string(kPluginAbiVersion) + ": rebuild it"});
}

TEST_F(PluginCliTest, PluginBuiltWithTheOtherStringAbiIsRefusedNamingIt) {
  // Before the check it loaded, and `--param gain=4` reached it as nothing (exit 0, wrong output).
  expect_refused(run_one(plugin("tptest_old_string_abi"), "tp_gain") + " --param gain=4",
                 {"libtptest_old_string_abi.so", "old (_GLIBCXX_USE_CXX11_ABI=0) libstdc++ string ABI",
                  "this tilepool with the new (_GLIBCXX_USE_CXX11_ABI=1)", "rebuild it"});
  expect_refused("kernels --plugin " + plugin("tptest_old_string_abi"), {"string ABI"});
}

TEST_F(PluginCliTest, PluginWhoseStaticInitializerThrowsIsRefusedWithOneLineInsteadOfAborting) {
  for (const std::string& args : {run_with(plugin("tptest_throw_on_load")), "kernels --plugin " + plugin("tptest_throw_on_load")}) {
    expect_refused(args, {"libtptest_throw_on_load.so", "static initializers threw or aborted",
                          "terminate called after throwing an instance of 'char const*'"});
  }
}

TEST_F(PluginCliTest, PluginWhoseStaticInitializerStopsItsProcessIsRefusedInsteadOfWaitedFor) {
  // Before: raise(SIGSTOP) there left the probe child stopped and the runner waiting for it for
  // good, deaf to Ctrl-C (a stopped process acts on no signal but SIGKILL and SIGCONT).
  expect_refused(run_with(plugin("tptest_stop_on_load")), {"libtptest_stop_on_load.so", "its static initializers stopped it"});
  const auto r = run_command(kTilepool + " kernels --plugin " + plugin("tptest_stop_on_load"));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("stopped it"), std::string::npos) << r.output;
}

TEST_F(PluginCliTest, PluginWhoseEntryPointThrowsIsRefusedWithOneLine) {
  expect_refused(run_with(plugin("tptest_throw_in_entry")), {"entry point tilepool_plugin_entry threw: threw the int 42"});
}

TEST_F(PluginCliTest, KernelNameClashingWithABuiltinIsRefused) {
  expect_refused(run_with(plugin("tptest_clash")), {"kernel 'add' clashes with a built-in kernel"});
}

// Before: both loaded; the first was listed by `tilepool kernels` but no run could use it, the
// second's line break split the table's row.
TEST_F(PluginCliTest, KernelOfNoInputsOrWithALineBreakInItsNameIsRefused) {
  expect_refused(run_with(plugin("tptest_no_inputs")), {"kernel 'tp_no_inputs' takes 0 inputs (a kernel takes at least 1)"});
  expect_refused(run_with(plugin("tptest_bad_name")), {"kernel name 'bad name\\nwith a line break' has a space or a control character"});
}

TEST_F(PluginCliTest, KernelNameClashingWithAnotherPluginsIsRefused) {
  const std::string twin = copy_of("tptest_other", "libtwin.so", 0755);
  expect_refused("kernels --plugin " + plugin("tptest_other") + " --plugin " + twin,
                 {"libtwin.so", "kernel 'tp_twice' clashes with a kernel of plugin", "libtptest_other.so"});
}

TEST_F(PluginCliTest, PluginThatAnotherUserCouldHaveWrittenIsRefused) {
  expect_refused(run_with(copy_of("tptest_other", "libgroup.so", 0775)), {"libgroup.so", "writable by its group"});
  expect_refused(run_with(copy_of("tptest_other", "libworld.so", 0757)), {"libworld.so", "writable by others"});
  // The folder: another user could replace the file.
  std::filesystem::create_directory(dir_ / "open");
  ASSERT_EQ(::chmod((dir_ / "open").c_str(), 0777), 0);
  std::filesystem::copy_file(plugin("tptest_other"), dir_ / "open" / "libinopen.so");
  expect_refused(run_with((dir_ / "open" / "libinopen.so").string()), {"its folder", "writable by others"});
  if (::geteuid() != 0) GTEST_SKIP() << "giving a file to another user needs root";
  const std::string theirs = copy_of("tptest_other", "libtheirs.so", 0755);
  ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
  expect_refused(run_with(theirs), {"libtheirs.so", "owned by uid 65534, neither you"});
}

TEST_F(PluginCliTest, KernelsListsTheKernelsOfSeveralPlugins) {
  const auto r = run_command(kTilepool + " kernels --plugin " + plugin("tptest_kernels") + " --plugin " + plugin("tptest_other"));
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* k : {"add ", "tp_cross5 ", "tp_crash ", "tp_throw ", "tp_twice "}) {
    EXPECT_NE(r.output.find(std::string("\n") + k), std::string::npos) << k << " in:\n" << r.output;
  }
  EXPECT_NE(r.output.find("(plugin " + std::filesystem::canonical(plugin("tptest_other")).string() + ")"), std::string::npos) << r.output;
}

TEST_F(PluginCliTest, RunWithSeveralPluginsRunsAPluginKernelInEveryMode) {
  for (const char* mode : {"share", "fork", "copy", "threads"}) {
    std::filesystem::remove(path("out.npy"));
    const auto r = run_command(kTilepool + " run --no-progress --plugin " + plugin("tptest_kernels") + " --plugin " +
                               plugin("tptest_other") + " -k tp_twice -i " + path("a.npy") + " -o " + path("out.npy") +
                               " -t 3,4 -w 2 -m " + mode);
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    const auto check = run_python("import numpy as np\n"
                                  "a = np.load('" + path("a.npy") + "'); o = np.load('" + path("out.npy") + "')\n"
                                  "assert (o == a + a).all(), o\n");
    EXPECT_EQ(check.status, 0) << mode << ": " << check.output;
  }
}

// Runs `args`; expects `status`, exactly one line "tilepool: error: ..." holding each of
// `mentions`, no output file and no segment of the run left in /dev/shm.
void expect_one_error_line(const std::string& args, int status, std::initializer_list<std::string> mentions,
                           const std::string& output_file) {
  const auto before = shm_entries();
  const auto r = run_command(kTilepool + " " + args);
  EXPECT_EQ(r.status, status) << args << "\n" << r.output;
  EXPECT_TRUE(r.output.starts_with("tilepool: error: ")) << args << "\n" << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  for (const std::string& m : mentions) EXPECT_NE(r.output.find(m), std::string::npos) << "expected '" << m << "' in: " << r.output;
  EXPECT_FALSE(std::filesystem::exists(output_file)) << args;
  for (const auto& name : shm_entries()) {
    if (before.contains(name)) continue;
    const auto owner = parse_job_segment_name(name);
    EXPECT_FALSE(owner && !owner_alive(*owner)) << args << " left /dev/shm/" << name;
  }
}

constexpr const char* kModeNames[] = {"share", "fork", "copy", "threads"};

TEST_F(PluginCliTest, AnythingATileFunctionThrowsIsOneErrorLineAndExit1InEveryMode) {
  // Before: `throw "text"` aborted the runner in threads mode (exit 134) and printed dozens of
  // "terminate called" lines in share and copy mode.
  const std::pair<const char*, const char*> kinds[] = {
      {"text", "cursed text from the plugin"}, {"int", "threw the int 42"}, {"other", "OwnFailure"}, {"std", "a runtime_error"}};
  for (const char* mode : kModeNames) {
    for (const auto& [kind, said] : kinds) {
      expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode + " --param kind=" + kind, 1,
                            {"tp_throws", said}, path("out.npy"));
    }
  }
}

TEST_F(PluginCliTest, AKernelThatEndsItsProcessIsOneErrorLineAndExit1InEveryMode) {
  // Before, in threads mode (kernels run in the runner): exit(3) in a tile ended the run with
  // status 3 and no message; std::terminate aborted it (134) with "terminate called" lines,
  // which share mode's workers printed too. Now threads mode names the kernel and what it did;
  // the other modes report the worker's death with the tile.
  for (const char* mode : kModeNames) {
    for (const char* kind : {"exit", "terminate"}) {
      SCOPED_TRACE(std::string(mode) + " " + kind);
      const bool threads = std::string_view(mode) == "threads";
      // A worker process's death is told as it was: copy mode said "exit status 1" for both
      // (its worker was reaped by Boost.Process's terminate, which drops the status).
      const std::string said = !threads ? std::string("tp_throws")
                                        : std::string("kernel tp_throws called ") + (std::string_view(kind) == "exit" ? "exit()" : "std::terminate()");
      const std::string how = threads ? said : std::string_view(kind) == "exit" ? "exit status 3" : "signal 6 (Aborted)";
      expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode + " --param kind=" + kind, 1,
                            {said, how}, path("out.npy"));
    }
  }
}

TEST_F(PluginCliTest, AKernelThatEndsTheProcessFromAHookThatRunsInTheRunnerIsOneLineAndExit1) {
  // output_spec (every mode) and input_region (copy mode) run in the runner's own process.
  // Before: exit() there ended the run with the plugin's status (exit(0): "success", no output,
  // no word), std::terminate with 134 and "terminate called" lines.
  for (const char* mode : kModeNames) {
    for (const char* kind : {"exit", "terminate"}) {
      SCOPED_TRACE(std::string(mode) + " " + kind);
      expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode + " --param hook=output_spec --param kind=" + kind,
                            1, {std::string_view(kind) == "exit" ? "kernel tp_throws's output_spec called exit() before the command finished"
                                                                 : "kernel tp_throws's output_spec called std::terminate()"},
                            path("out.npy"));
    }
  }
  expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m copy --param hook=input_region --param kind=terminate", 1,
                        {"kernel tp_throws's input_region called std::terminate()"}, path("out.npy"));
}

TEST_F(PluginCliTest, ABoundKernelWhoseDestructorThrowsIsOneLineInThreadsAndCopyModesAndOnlyItsWorkerElsewhere) {
  // A throw out of a (noexcept) destructor is std::terminate wherever it runs. Bound kernels are
  // destroyed inside the job: in threads mode that ends the runner, with one line (before: exit
  // 134 and "terminate called" lines); in share and fork modes it ends a worker after its tiles
  // were done, so the output is whole and the run succeeds, silently (before: the worker printed
  // "terminate called" lines); copy mode binds a kernel per tile, so every tile kills its worker
  // and the job fails, in one line.
  expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m threads --param hook=destructor", 1,
                        {"kernel tp_throws called std::terminate() (or let an exception out of a noexcept function or destructor: "
                         "cursed text from the plugin)"},
                        path("out.npy"));
  expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m copy --param hook=destructor", 1,
                        {"tp_throws: tile ", "killed its worker"}, path("out.npy"));
  for (const char* mode : {"share", "fork"}) {
    SCOPED_TRACE(mode);
    std::filesystem::remove(path("out.npy"));
    const auto r = run_command(kTilepool + " " + run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                               " --param hook=destructor");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;  // the report alone
    const auto check = run_python("import numpy as np\nassert (np.load('" + path("out.npy") + "') == np.load('" + path("a.npy") +
                                  "')).all()\n");
    EXPECT_EQ(check.status, 0) << check.output;
  }
}

TEST_F(PluginCliTest, AKernelErrorMessageTooLongForTheControlBlockIsCutVisiblyInEveryMode) {
  // Before, copy mode reported "sent an error message of 100040 bytes" instead of the message.
  for (const char* mode : kModeNames) {
    SCOPED_TRACE(mode);
    const auto r = run_command(kTilepool + " " + run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                               " --param kind=long");
    EXPECT_EQ(r.status, 1) << r.output.substr(0, 300);
    EXPECT_NE(r.output.find("a long message: xxxx"), std::string::npos) << r.output.substr(0, 300);
    EXPECT_TRUE(r.output.ends_with("xxx...\n")) << r.output.substr(0, 300);
    EXPECT_LT(r.output.size(), 1100U);
  }
}

TEST_F(PluginCliTest, APluginWhoseStaticDestructorAbortsDoesNotTurnAPublishedResultIntoAFailure) {
  // Before: the runner exited 134 after it had published the output (the destructor ran at
  // exit, after main returned).
  for (const char* mode : kModeNames) {
    SCOPED_TRACE(mode);
    std::filesystem::remove(path("out.npy"));
    const auto r = run_command(kTilepool + " " + run_one(plugin("tptest_abort_at_exit"), "tp_twice") + " -w 2 -m " + mode);
    EXPECT_EQ(r.status, 0) << r.output;
    // The report, and not a word more.
    EXPECT_TRUE(r.output.starts_with("tp_twice: 6 tiles on ")) << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
    const auto check = run_python("import numpy as np\nassert (np.load('" + path("out.npy") + "') == 2 * np.load('" + path("a.npy") +
                                  "')).all()\n");
    EXPECT_EQ(check.status, 0) << check.output;
  }
}

TEST_F(PluginCliTest, AnythingBindThrowsIsOneErrorLineAndExit1InEveryMode) {
  for (const char* mode : kModeNames) {
    expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode + " --param hook=bind", 1,
                          {"tp_throws", "cursed text from the plugin"}, path("out.npy"));
  }
}

TEST_F(PluginCliTest, AnythingOutputSpecThrowsIsOneErrorLineAndExit2InEveryMode) {
  // Before: this aborted the runner in every mode.
  for (const char* mode : kModeNames) {
    for (const char* kind : {"text", "int"}) {
      expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                                " --param hook=output_spec --param kind=" + kind,
                            2, {"tp_throws: output_spec failed"}, path("out.npy"));
    }
  }
}

TEST_F(PluginCliTest, AnOutputSpecThatIsNoArrayIsOneErrorLineAndExit2InEveryMode) {
  // Before: a dtype code past the enum was taken for an item size ("needs 316659406213248
  // bytes" of store).
  for (const char* mode : kModeNames) {
    expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                              " --param hook=output_spec --param kind=bad_dtype",
                          2, {"tp_throws: output_spec returned dtype code 200, which is no dtype"}, path("out.npy"));
    expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                              " --param hook=output_spec --param kind=bad_shape",
                          2, {"tp_throws: output_spec returned shape (-3, 4), which no array has"}, path("out.npy"));
  }
}

TEST_F(PluginCliTest, AnythingIterationShapeThrowsIsTheKernelsErrorNotTheTiles) {
  // Before: "tilepool: error: --tile 4,4: tp_throws: iteration_shape failed", as if the tile
  // were wrong.
  ASSERT_EQ(run_python("import numpy as np\nnp.save('" + path("a7.npy") + "', np.zeros((7, 10)))\n").status, 0);
  for (const char* mode : kModeNames) {
    const std::string args = "run --no-progress --plugin " + plugin("tptest_throwing") + " -k tp_throws -i " + path("a7.npy") +
                             " -o " + path("out.npy") + " -t 4,4 -w 2 -m " + mode;
    expect_one_error_line(args, 2, {"tilepool: error: tp_throws: iteration_shape failed: cursed text from iteration_shape"},
                          path("out.npy"));
  }
}

TEST_F(PluginCliTest, AnythingInputRegionThrowsIsOneErrorLineInCopyMode) {
  // Copy mode is the mode that asks for input regions (to ship them).
  expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m copy --param hook=input_region --param kind=int",
                        1, {"tp_throws: input_region failed", "threw the int 42"}, path("out.npy"));
}

TEST_F(PluginCliTest, AKernelThatCallsPthreadExitIsOneLineAndExit1FromEveryHookInEveryMode) {
  // Before: "FATAL: exception not rethrown" and an abort, once per worker (pthread_exit unwinds
  // with an exception that a catch (...) may not drop), exit 134 in threads mode and from the
  // hooks that run in the runner.
  const std::string run = run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 --param kind=pthread_exit";
  for (const char* mode : kModeNames) {
    SCOPED_TRACE(mode);
    for (const char* hook : {"tile", "bind", "output_spec"}) {
      expect_one_error_line(run + " -m " + mode + " --param hook=" + hook, 1, {"kernel tp_throws called pthread_exit()"},
                            path("out.npy"));
    }
  }
  expect_one_error_line(run + " -m copy --param hook=input_region", 1,
                        {"kernel tp_throws called pthread_exit() from input_region"}, path("out.npy"));
  // With --check-regions, input_region runs in the workers: the job's error, one line (before:
  // every worker printed its own line too).
  for (const char* mode : {"share", "fork"}) {
    expect_one_error_line(run + " -m " + mode + " --check-regions --param hook=input_region", 1,
                          {"kernel tp_throws called pthread_exit() from input_region"}, path("out.npy"));
  }
}

TEST_F(PluginCliTest, AKernelsMessageIsEscapedOnceFromEveryHook) {
  // Before: copy mode's input_region message was escaped twice ("two\\nlines, a back\\\\slash").
  const std::string once = R"(two\nlines, a back\\slash)";
  for (const char* mode : kModeNames) {
    expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode + " --param hook=tile --param kind=escaped",
                          1, {once}, path("out.npy"));
    expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m " + mode +
                              " --param hook=output_spec --param kind=escaped",
                          2, {once}, path("out.npy"));
  }
  expect_one_error_line(run_one(plugin("tptest_throwing"), "tp_throws") + " -w 2 -m copy --param hook=input_region --param kind=escaped",
                        1, {"tp_throws: input_region failed", once}, path("out.npy"));
}

// --- parameters: declared, checked, listed ------------------------------------------------------

TEST_F(PluginCliTest, UnknownParameterIsExit2NamingTheKeysTheKernelAccepts) {
  expect_one_error_line(run_one(plugin("tptest_kernels"), "tp_box") + " --param radus=2", 2,
                        {"tp_box: unknown parameter 'radus'", "tp_box accepts: radius (integer, default 1)"}, path("out.npy"));
  expect_one_error_line("run --no-progress -k add_scalar -i " + path("a.npy") + " -o " + path("out.npy") + " -t 4,4 --param valeu=3",
                        2, {"unknown parameter 'valeu'", "add_scalar accepts: value (number, required)"}, path("out.npy"));
  expect_one_error_line("run --no-progress -k add -i " + path("a.npy") + " -i " +
                            path("a.npy") + " -o " + path("out.npy") + " -t 4,4 --param x=1",
                        2, {"unknown parameter 'x'", "add takes no parameters"}, path("out.npy"));
}

TEST_F(PluginCliTest, RepeatedParameterIsExit2) {
  expect_one_error_line("run --no-progress -k add_scalar -i " + path("a.npy") + " -o " + path("out.npy") +
                            " -t 4,4 --param value=1 --param value=2",
                        2, {"parameter 'value' is given twice (value=1 and value=2)", "(add_scalar accepts: value (number, required))"},
                        path("out.npy"));
  // A plugin's kernel: its keys too (the plugin is loaded to name them).
  expect_one_error_line(run_one(plugin("tptest_kernels"), "tp_box") + " --param radius=1 --param radius=2", 2,
                        {"parameter 'radius' is given twice", "(tp_box accepts: radius (integer, default 1))"}, path("out.npy"));
}

TEST_F(PluginCliTest, IllTypedParameterIsExit2NamingItsType) {
  expect_one_error_line(run_one(plugin("tptest_kernels"), "tp_box") + " --param radius=1.5", 2,
                        {"tp_box: parameter radius=1.5 is not an integer", "the box's half-width"}, path("out.npy"));
  expect_one_error_line("run --no-progress -k add_scalar -i " + path("a.npy") + " -o " + path("out.npy") + " -t 4,4", 2,
                        {"add_scalar needs the parameter value=NUMBER"}, path("out.npy"));
}

TEST_F(PluginCliTest, KernelsListsEachKernelsParametersWithTypeDefaultAndMeaning) {
  const auto r = run_command(kTilepool + " kernels --plugin " + plugin("tptest_kernels"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("\n            --param value=NUMBER  the number added to each element (required)\n"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\n            --param radius=INTEGER  the box's half-width (default 1)\n"), std::string::npos) << r.output;
  // Under its kernel.
  EXPECT_LT(r.output.find("\ntp_box "), r.output.find("--param radius=INTEGER")) << r.output;
}

TEST_F(PluginCliTest, ParameterDefaultIsWhatTheKernelSeesWhenTheJobGivesNone) {
  for (const char* mode : kModeNames) {
    std::filesystem::remove(path("out.npy"));
    std::filesystem::remove(path("one.npy"));
    auto r = run_command(kTilepool + " run --no-progress --plugin " +
                         plugin("tptest_kernels") + " -k tp_box -i " + path("a.npy") + " -o " + path("out.npy") + " -t 3,4 -w 2 -m " + mode);
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    r = run_command(kTilepool + " run --no-progress --plugin " + plugin("tptest_kernels") + " -k tp_box -i " + path("a.npy") + " -o " +
                    path("one.npy") + " -t 3,4 -w 2 -m " + mode + " --param radius=1");
    ASSERT_EQ(r.status, 0) << mode << ": " << r.output;
    EXPECT_EQ(run_python("import numpy as np\nassert (np.load('" + path("out.npy") + "') == np.load('" + path("one.npy") + "')).all()\n").status, 0)
        << mode;
  }
}

TEST_F(PluginCliTest, CheckRegionsFailsAKernelThatReadsOutsideItsRegionInEveryModeAndPublishesNothing) {
  // a.npy is 2-D: tp_next_lying reads one column past each tile.
  for (const char* mode : kModeNames) {
    SCOPED_TRACE(mode);
    expect_one_error_line(run_one(plugin("tptest_kernels"), "tp_next_lying") + " -w 2 --check-regions -m " + mode, 1,
                          {"kernel tp_next_lying failed on tile", "of input 1, of which this process holds only"}, path("out.npy"));
  }
  // A kernel that keeps to its regions runs as before.
  const auto r = run_command(kTilepool + " " + run_one(plugin("tptest_kernels"), "tp_box") + " -w 2 --check-regions");
  EXPECT_EQ(r.status, 0) << r.output;
}

// --- the library: plugin kernels in every mode ----------------------------------------------

void fill(const AnyArray& a, double scale) {
  auto* p = reinterpret_cast<double*>(a.data());
  for (std::int64_t i = 0; i < a.size(); ++i) p[i] = static_cast<double>((i * 37) % 1009) / scale - 3.0;
}

struct Outcome {
  AnyArray output;
  JobStats stats;
};

// Runs `kernel` over one input of `shape` on a fresh pool of `mode` with 2 workers.
Outcome run_in(Mode mode, const std::string& kernel, const Shape& shape, const Shape& tile, const Params& params = {},
               bool check_regions = false) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = mode, .sample_memory = false});
  const ArrayPlacement placement = pool.placement();
  JobRequest job{kernel, {placement.make(DType::float64, shape, ArrayRole::input)}, {}, tile, params};
  job.check_regions = check_regions;
  fill(job.inputs[0].array, 7.0);
  const ArraySpec spec = output_spec(job);
  job.output = placement.make(spec.dtype, spec.shape, ArrayRole::output);
  const JobStats stats = pool.run(job);
  return Outcome{job.output.array, stats};
}

bool same_bytes(const AnyArray& a, const AnyArray& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

class PluginModesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    (void)load_plugin(plugin("tptest_kernels"));
    (void)load_plugin(plugin("tptest_daily_stats"));
  }
  static constexpr Mode kModes[] = {Mode::share, Mode::fork, Mode::copy, Mode::threads};
};

TEST_F(PluginModesTest, HaloKernelIsBitwiseEqualInEveryModeAndCopyShipsItsHaloOnly) {
  const Shape shape{3, 19, 23};
  const Outcome share = run_in(Mode::share, "tp_cross5", shape, {5, 6});
  for (const Mode mode : kModes) {
    const Outcome o = run_in(mode, "tp_cross5", shape, {5, 6});
    EXPECT_TRUE(same_bytes(o.output, share.output)) << mode_name(mode);
    if (mode == Mode::copy) {
      // Each tile ships its box grown by one element on each side (clamped), for each of the 3
      // planes, and returns its box.
      std::uint64_t elements = 0;
      const TileGrid grid = TileGrid::make(shape, Shape{5, 6});
      for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
        const Box region = grown_on_last_two_axes(grid.box(t), 1, shape);
        elements += static_cast<std::uint64_t>(region.element_count() + grid.box(t).element_count());
      }
      EXPECT_EQ(o.stats.bytes_copied, elements * sizeof(double));
    } else {
      EXPECT_EQ(o.stats.bytes_copied, 0u) << mode_name(mode);
    }
  }
  // Spot-check against the definition.
  AnyArray in = allocate_array(DType::float64, shape, Sharing::private_to_process);
  fill(in, 7.0);
  const auto* a = reinterpret_cast<const double*>(in.data());
  const auto* out = reinterpret_cast<const double*>(share.output.data());
  const auto at = [&](std::int64_t p, std::int64_t i, std::int64_t j) {
    return a[(p * 19 + std::clamp<std::int64_t>(i, 0, 18)) * 23 + std::clamp<std::int64_t>(j, 0, 22)];
  };
  for (std::int64_t p = 0; p < 3; ++p) {
    for (std::int64_t i = 0; i < 19; ++i) {
      for (std::int64_t j = 0; j < 23; ++j) {
        const double expected = at(p, i, j) + at(p, i - 1, j) + at(p, i + 1, j) + at(p, i, j - 1) + at(p, i, j + 1);
        ASSERT_EQ(out[(p * 19 + i) * 23 + j], expected) << p << "," << i << "," << j;
      }
    }
  }
}

TEST_F(PluginModesTest, KernelWhoseOutputShapeDiffersIsBitwiseEqualInEveryModeAndCopyShipsEveryDayOfItsPixels) {
  const Shape shape{40, 13, 11};  // (days, rows, cols) -> (2, rows, cols)
  const Outcome share = run_in(Mode::share, "daily_stats", shape, {4, 4});
  ASSERT_EQ(share.output.shape(), (Shape{2, 13, 11}));
  for (const Mode mode : kModes) {
    const Outcome o = run_in(mode, "daily_stats", shape, {4, 4});
    EXPECT_TRUE(same_bytes(o.output, share.output)) << mode_name(mode);
    if (mode == Mode::copy) {
      // Every input element once (each pixel's 40 days go with its tile) and every output one.
      EXPECT_EQ(o.stats.bytes_copied, static_cast<std::uint64_t>(40 * 13 * 11 + 2 * 13 * 11) * sizeof(double));
    }
  }
  AnyArray in = allocate_array(DType::float64, shape, Sharing::private_to_process);
  fill(in, 7.0);
  const auto* a = reinterpret_cast<const double*>(in.data());
  const auto* out = reinterpret_cast<const double*>(share.output.data());
  for (std::int64_t px = 0; px < 13 * 11; ++px) {
    double sum = 0, squares = 0;
    for (std::int64_t d = 0; d < 40; ++d) sum += a[d * 143 + px];
    const double mean = sum / 40;
    for (std::int64_t d = 0; d < 40; ++d) squares += (a[d * 143 + px] - mean) * (a[d * 143 + px] - mean);
    EXPECT_NEAR(out[px], mean, 1e-12);
    EXPECT_NEAR(out[143 + px], std::sqrt(squares / 40), 1e-12);
  }
}

TEST_F(PluginModesTest, PluginKernelThatThrowsFailsTheJobWithItsMessageInEveryMode) {
  Params params;
  params.set("row", "9");
  params.set("col", "2");
  for (const Mode mode : kModes) {
    try {
      (void)run_in(mode, "tp_throw", {16, 16}, {4, 4}, params);
      ADD_FAILURE() << mode_name(mode) << ": expected the job to fail";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_EQ(e.code(), Errc::job_failed) << m;
      EXPECT_NE(m.find("tp_throw: element (9, 2) is cursed"), std::string::npos) << mode_name(mode) << ": " << m;
      EXPECT_NE(m.find("tp_throw"), std::string::npos) << m;
    }
  }
}

TEST_F(PluginModesTest, InputRegionFollowsTheJobsParametersInEveryMode) {
  const Shape shape{2, 17, 21};
  Params radius2;
  radius2.set("radius", "2");
  const Outcome share = run_in(Mode::share, "tp_box", shape, {5, 6}, radius2);
  for (const Mode mode : kModes) {
    const Outcome o = run_in(mode, "tp_box", shape, {5, 6}, radius2);
    EXPECT_TRUE(same_bytes(o.output, share.output)) << mode_name(mode);
    if (mode == Mode::copy) {  // each tile ships its box grown by 2, clamped
      std::uint64_t elements = 0;
      const TileGrid grid = TileGrid::make(shape, Shape{5, 6});
      for (std::int64_t t = 0; t < grid.tile_count(); ++t) {
        elements += static_cast<std::uint64_t>(grown_on_last_two_axes(grid.box(t), 2, shape).element_count() +
                                               grid.box(t).element_count());
      }
      EXPECT_EQ(o.stats.bytes_copied, elements * sizeof(double));
    }
  }
  // Element (0, 8, 10) is inside: the 25 elements around it.
  AnyArray in = allocate_array(DType::float64, shape, Sharing::private_to_process);
  fill(in, 7.0);
  const auto* a = reinterpret_cast<const double*>(in.data());
  double expected = 0;
  for (int i = 6; i <= 10; ++i) {
    for (int j = 8; j <= 12; ++j) expected += a[i * 21 + j];
  }
  EXPECT_EQ(reinterpret_cast<const double*>(share.output.data())[8 * 21 + 10], expected);
}

// The job's error when `kernel` reads outside its declared region, or "" if the job succeeded.
std::string region_error(Mode mode, const std::string& kernel, bool check_regions) {
  try {
    (void)run_in(mode, kernel, {16, 16}, {4, 4}, {}, check_regions);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::job_failed) << e.what();
    return e.what();
  }
}

TEST_F(PluginModesTest, KernelReadingOutsideItsDeclaredRegionFailsTheJobInCopyModeNamingKernelAndRegion) {
  // Before: copy mode gave silently wrong data (exit 0) while the other modes were right; a read
  // through ArrayView::at (tp_next_lying) still did, as it was not checked against the window.
  for (const std::string kernel : {"tp_box_lying", "tp_next_lying"}) {
    const std::string m = region_error(Mode::copy, kernel, /*check_regions=*/false);
    EXPECT_NE(m.find("kernel " + kernel + " failed on tile"), std::string::npos) << m;
    EXPECT_NE(m.find("of input 1, of which this process holds only"), std::string::npos) << m;
    EXPECT_NE(m.find("input region it declares"), std::string::npos) << m;
  }
}

TEST_F(PluginModesTest, KernelReadingOutsideItsDeclaredRegionFailsTheJobInEveryModeThatChecksRegions) {
  // Without the check, share, fork and threads read the real elements (the region is only a
  // promise there); with it, every mode fails the way copy mode does, naming the region.
  for (const std::string kernel : {"tp_box_lying", "tp_next_lying"}) {
    for (const Mode mode : kModes) {
      SCOPED_TRACE(kernel + " in " + std::string(mode_name(mode)));
      if (mode != Mode::copy) {
        EXPECT_EQ(region_error(mode, kernel, /*check_regions=*/false), "");
      }
      const std::string m = region_error(mode, kernel, /*check_regions=*/true);
      EXPECT_NE(m.find("kernel " + kernel + " failed on tile"), std::string::npos) << m;
      EXPECT_NE(m.find("of input 1, of which this process holds only"), std::string::npos) << m;
      // Threads mode names its thread: a "worker pid" there was the runner's own pid.
      EXPECT_NE(m.find(mode == Mode::threads ? " in worker thread " : " in worker pid "), std::string::npos) << m;
    }
  }
}

TEST_F(PluginModesTest, MapWhoseIterationSpaceIsNotItsOutputsShapeIsRefusedInEveryModeBeforeAnyWork) {
  // Before: only copy mode refused it; share and threads wrote past the output's mapping (the
  // fault blamed the input) or, with an extra axis, exited 0.
  for (const Mode mode : kModes) {
    try {
      (void)run_in(mode, "tp_wide_space", {16, 16}, {4, 4});
      ADD_FAILURE() << mode_name(mode) << ": expected a refusal";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::bad_input) << e.what();
      EXPECT_EQ(std::string(e.what()), "tp_wide_space: tiles a space of shape (32, 16) but writes an output of shape (16, 16) (a map "
                                       "kernel's iteration_shape must be its output's shape)")
          << mode_name(mode);
    }
  }
}

TEST_F(PluginModesTest, CheckingRegionsChangesNoResultOfAKernelThatKeepsToThem) {
  // Halos that follow a parameter, an output shaped unlike the input, and a reduction: bitwise
  // equal with and without the check, in every mode.
  Params radius2;
  radius2.set("radius", "2");
  struct Case {
    std::string kernel;
    Shape shape, tile;
    Params params;
  };
  for (const Case& c : {Case{"tp_box", {2, 17, 21}, {5, 6}, radius2}, Case{"tp_cross5", {3, 19, 23}, {5, 6}, {}},
                        Case{"daily_stats", {40, 13, 11}, {4, 4}, {}}, Case{"sum", {37, 29}, {8, 8}, {}}}) {
    const Outcome plain = run_in(Mode::share, c.kernel, c.shape, c.tile, c.params);
    for (const Mode mode : kModes) {
      const Outcome checked = run_in(mode, c.kernel, c.shape, c.tile, c.params, /*check_regions=*/true);
      EXPECT_TRUE(same_bytes(checked.output, plain.output)) << c.kernel << " in " << mode_name(mode);
    }
  }
}

TEST(PluginWarmPoolTest, WarmSharePoolLoadsAPluginItMeetsForTheFirstTime) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::share, .sample_memory = false});
  const ArrayPlacement placement = pool.placement();
  JobRequest job{"negate", {placement.make(DType::float64, {6, 8}, ArrayRole::input)}, {}, {3, 4}, {}};
  fill(job.inputs[0].array, 3.0);
  job.output = placement.make(DType::float64, {6, 8}, ArrayRole::output);
  (void)pool.run(job);  // the workers are up and have run a built-in

  const LoadedPlugin& other = load_plugin(plugin("tptest_other"));
  ASSERT_EQ(other.kernels.size(), 1u);
  EXPECT_EQ(&load_plugin(plugin("tptest_other")), &other) << "a second load is the first one";
  job.kernel = "tp_twice";
  (void)pool.run(job);
  const auto* in = reinterpret_cast<const double*>(job.inputs[0].array.data());
  const auto* out = reinterpret_cast<const double*>(job.output.array.data());
  for (std::int64_t i = 0; i < 48; ++i) ASSERT_EQ(out[i], in[i] + in[i]) << i;
}

}  // namespace
}  // namespace tilepool
