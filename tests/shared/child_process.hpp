#pragma once
// Runs a piece of a test in a forked child: to see a process die of a signal, or to act as a
// user without the root's power to open any file.

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace tilepool::testing {

/// Runs `body` in a forked child (no core dump) and returns the child's wait status. The child
/// ends with _exit(body()), or _exit(99) if body throws: nothing of the parent's test state
/// (handles that own segments, GoogleTest) is torn down twice. Make segments in the parent.
inline int run_in_child(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    int rc = 99;
    try {
      rc = body();
    } catch (...) {  // NOLINT(bugprone-empty-catch): reported as exit status 99
    }
    ::_exit(rc);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// "exited with status 3" or "killed by signal 7 (Bus error)".
inline std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + ::strsignal(WTERMSIG(status)) + ")";
  }
  return "wait status " + std::to_string(status);
}

/// Success if the child died of `signal`. Under AddressSanitizer, whose handler reports a
/// deadly signal and exits with status 1 instead, any exit other than 0 counts.
inline ::testing::AssertionResult died_of(int status, int signal) {
#if defined(__SANITIZE_ADDRESS__)
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) return ::testing::AssertionSuccess();
#endif
  if (WIFSIGNALED(status) && WTERMSIG(status) == signal) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the child " << describe_wait_status(status) << ", expected it killed by signal "
                                       << signal << " (" << ::strsignal(signal) << ")";
}

/// Success if the child exited with status 0.
inline ::testing::AssertionResult exited_cleanly(int status) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the child " << describe_wait_status(status);
}

/// Drops this process's power to bypass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
/// CAP_FOWNER), so that even root is refused a file its mode does not allow. Call it in a child.
inline bool drop_permission_override() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  for (const int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER}) {
    data[cap / 32].effective &= ~(1U << (cap % 32));
    data[cap / 32].permitted &= ~(1U << (cap % 32));
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

}  // namespace tilepool::testing
