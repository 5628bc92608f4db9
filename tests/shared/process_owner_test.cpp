// Owner liveness: a process is named by its pid and its start time, so a pid that the kernel
// gave to another process does not keep a dead owner "alive".
#include "tilepool/shared/process_owner.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include "shared/child_process.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

// A child that waits until killed; reaped by the destructor (or by kill_and_reap).
class SleepingChild {
 public:
  SleepingChild() {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      // A command name with spaces and parentheses, as /proc/PID/stat's readers must expect.
      ::prctl(PR_SET_NAME, "a) b (c", 0, 0, 0);
      (void)::write(ready[1], "1", 1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char byte = 0;
    (void)::read(ready[0], &byte, 1);
    ::close(ready[0]);
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;
  ~SleepingChild() { kill_and_reap(); }
  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
};

TEST(ProcessOwnerTest, ThisProcessIsAliveAndHasAStartTime) {
  const ProcessOwner me = this_process();

  EXPECT_EQ(me.pid, ::getpid());
  EXPECT_GT(me.start_time, 0U);
  EXPECT_TRUE(owner_alive(me));
}

TEST(ProcessOwnerTest, ALivePidWithAnotherStartTimeIsADeadOwner) {
  const ProcessOwner me = this_process();

  EXPECT_FALSE(owner_alive(ProcessOwner{me.pid, me.start_time + 1}));
  EXPECT_FALSE(owner_alive(ProcessOwner{me.pid, me.start_time - 1}));
}

TEST(ProcessOwnerTest, AChildIsAliveUntilItIsKilled) {
  SleepingChild child;
  ASSERT_GT(child.pid(), 0);
  const auto start = process_start_time(child.pid());
  ASSERT_TRUE(start.has_value());
  const ProcessOwner owner{child.pid(), *start};

  EXPECT_TRUE(owner_alive(owner));
  child.kill_and_reap();
  EXPECT_FALSE(owner_alive(owner));
  EXPECT_EQ(process_start_time(owner.pid), std::nullopt);
}

// Before: a zombie counted as alive, so `tilepool gc` kept the segments of a killed Python
// process whose parent never reaped it (PID 1 of a container that reaps nothing).
TEST(ProcessOwnerTest, AZombieIsADeadOwner) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(0);
  std::optional<unsigned long long> start;
  // Until it has exited, and while it is a zombie, /proc/PID/stat is there.
  for (int i = 0; i < 200 && !(start = process_start_time(pid)); ++i) ::usleep(1000);
  ASSERT_TRUE(start.has_value());
  const ProcessOwner owner{pid, *start};
  bool dead = false;
  for (int i = 0; i < 2000 && !(dead = !owner_alive(owner)); ++i) ::usleep(1000);  // it exits at once
  EXPECT_TRUE(dead);
  EXPECT_EQ(process_start_time(pid), start);  // still there: a zombie, not reaped
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST(ProcessOwnerTest, TheStartTimeIsReadPastACommandNameWithSpacesAndParentheses) {
  SleepingChild child;
  ASSERT_GT(child.pid(), 0);

  const auto start = process_start_time(child.pid());

  ASSERT_TRUE(start.has_value());
  // The child started after this process.
  EXPECT_GE(*start, this_process().start_time);
}

TEST(ProcessOwnerTest, AForkedChildIsItsOwnOwner) {
  const ProcessOwner parent = this_process();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const ProcessOwner child = this_process();
    const bool ok = child.pid == ::getpid() && child.pid != parent.pid && owner_alive(child);
    (void)::write(fds[1], ok ? "y" : "n", 1);
    ::_exit(0);
  }
  ::close(fds[1]);
  char answer = 0;
  EXPECT_EQ(::read(fds[0], &answer, 1), 1);
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  EXPECT_EQ(answer, 'y');
}

TEST(ProcessOwnerTest, NoProcessHasPidZeroOrANegativePid) {
  EXPECT_EQ(process_start_time(0), std::nullopt);
  EXPECT_EQ(process_start_time(-1), std::nullopt);
  EXPECT_FALSE(owner_alive(ProcessOwner{0, 0}));
}

// A process that cannot read its own start time (no descriptor left to open /proc with) does
// not name things as an owner with start time 0: every sweep would take that owner for dead and
// remove a live process's segments and temporaries. It is an error instead.
TEST(ProcessOwnerTest, ThisProcessIsAnErrorWhenProcCannotTellItsStartTime) {
#if defined(__SANITIZE_ADDRESS__)
  // UBSan's vptr check beside ASan needs descriptors to check the thrown Error's type: without
  // any it reports a false "invalid vptr" and exits. The release stage runs this test.
  GTEST_SKIP() << "needs a process with no descriptors left, which the sanitizer runtime cannot run in";
#endif
  const int status = testing::run_in_child([] {
    rlimit before{};
    if (::getrlimit(RLIMIT_NOFILE, &before) != 0) return 3;
    const rlimit none{0, before.rlim_max};  // the forked child has a new pid: this_process() must read /proc
    if (::setrlimit(RLIMIT_NOFILE, &none) != 0) return 3;
    try {
      const ProcessOwner me = this_process();
      return me.start_time == 0 ? 1 : 2;  // 1: the failure was taken for a start time
    } catch (const Error&) {  // (its members are not read: UBSan's type check fails without descriptors)
      return 0;
    }
  });
  EXPECT_TRUE(testing::exited_cleanly(status)) << testing::describe_wait_status(status);
}

}  // namespace
}  // namespace tilepool
