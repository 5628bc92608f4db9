// The exit status of a failed command: the one mapping from error codes, and the end of the
// process, for tilepool and tilepool-mpi alike.
#include "commands.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/workers/kernel.hpp"
#include "tilepool/workers/worker.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <fmt/format.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define TILEPOOL_LEAK_CHECK_AT_EXIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define TILEPOOL_LEAK_CHECK_AT_EXIT 1
#endif
#endif

namespace tilepool::cli {
namespace {

const char* g_program = "tilepool";
pid_t g_command_pid = 0;  // forks of it (fork-mode workers, the plugin probe) do not speak for it
std::terminate_handler g_default_terminate = nullptr;  // theirs (the probe reports its words)

// One line, this process's job segments removed, exit 1; once, whichever thread comes first.
[[noreturn]] void end_unexpectedly(const std::string& how) noexcept {
  static std::atomic_flag ending = ATOMIC_FLAG_INIT;
  if (ending.test_and_set()) {
    for (;;) ::pause();
  }
  std::fprintf(stderr, "%s: error: %s before the command finished (a plugin's code, in the runner's process)\n", g_program,
               one_line(how).c_str());
  std::fflush(stderr);
  remove_own_job_segments(Backing{});
  std::_Exit(1);
}

// "kernel K's output_spec called exit()" when a kernel hook on this thread called it.
std::string who(const char* what) {
  const std::string hook = running_kernel_hook();
  return hook.empty() ? fmt::format("{} was called", what) : fmt::format("{} called {}", hook, what);
}

// A stop signal that waited kStuckStopGrace for threads mode's kernels, each inside a tile:
// the command ends now, as it would have once they were done (nothing published; the output
// being made has no name, or a hidden one the next run's sweep removes).
[[noreturn]] void end_stuck_stop(int sig) {
  std::fprintf(stderr, "%s: error: interrupted by %s; a kernel thread still inside a tile was not waited for (threads mode)\n",
               g_program, sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : ::strsignal(sig));
  std::fflush(stderr);
  remove_own_job_segments(Backing{});
  std::_Exit(128 + sig);
}

void on_exit() {
  if (::getpid() == g_command_pid) end_unexpectedly(who("exit()"));
}

// Runs right after on_exit: a second thread that called exit() while the first is inside
// end_unexpectedly (two kernel threads' exit(3) at once) runs the handlers the first left and
// would end the process with the kernel's status (glibc 2.36 runs concurrent exit()s side by
// side). Here it waits for the first one's _Exit(1).
void exit_barrier() {
  if (::getpid() == g_command_pid) {
    for (;;) ::pause();
  }
}

[[noreturn]] void on_terminate() {
  if (::getpid() != g_command_pid) {
    if (g_default_terminate != nullptr) g_default_terminate();
    std::abort();
  }
  end_unexpectedly(who("std::terminate()") + " (an exception left a noexcept function, a destructor or a thread" +
                   describe_terminating_exception() + ")");
}

}  // namespace

void guard_command(const char* program) {
  g_program = program;
  g_command_pid = ::getpid();
  (void)std::atexit(exit_barrier);  // registered first: runs after on_exit
  (void)std::atexit(on_exit);
  g_default_terminate = std::set_terminate(on_terminate);
  set_process_thread_end_handler([](const std::string& how) { end_unexpectedly(how); });
  set_stuck_stop_handler(end_stuck_stop);
}

int exit_status(const Error& e) {
  switch (e.code()) {
    case Errc::usage:
    case Errc::bad_input:
    case Errc::exists:
    // Segments reserve their pages (posix_fallocate) when they are made, before any work: a
    // full store is bad input, like the other checks made then.
    case Errc::no_space: return 2;
    case Errc::interrupted: return 128 + interrupt_signal();
    case Errc::system:
    case Errc::job_failed: break;
  }
  return 1;
}

void end_process(int status) {
  // What the command printed (a --json report, a listing) is part of its result: a full or
  // failing standard output fails the command (as coreutils' close_stdout does), where before
  // `--json >/dev/full` exited 0 with the report lost.
  if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
    std::fprintf(stderr, "%s: error: writing to standard output: %s\n", g_program, std::strerror(errno));
    if (status == 0) status = 1;
  }
  std::fflush(nullptr);
#ifdef TILEPOOL_LEAK_CHECK_AT_EXIT
  __lsan_do_leak_check();
#endif
  std::_Exit(status);
}

}  // namespace tilepool::cli
