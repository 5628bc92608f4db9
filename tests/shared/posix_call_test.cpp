#include "tilepool/shared/posix_call.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

namespace tilepool {
namespace {

using namespace std::chrono_literals;

TEST(PosixCallTest, RetriesWhileTheCallFailsWithEintr) {
  int calls = 0;

  const long result = retry_on_eintr([&]() -> long {
    ++calls;
    if (calls < 3) {
      errno = EINTR;
      return -1;
    }
    return 42;
  });

  EXPECT_EQ(result, 42);
  EXPECT_EQ(calls, 3);
}

TEST(PosixCallTest, ReturnsAnotherFailureAtOnceWithItsErrno) {
  int calls = 0;

  const int result = retry_on_eintr([&] {
    ++calls;
    errno = EBADF;
    return -1;
  });

  EXPECT_EQ(result, -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(calls, 1);
}

TEST(PosixCallTest, ReturnsASuccessAtOnceEvenIfErrnoIsEintr) {
  // errno is meaningful only after a failure: a stale EINTR must not cause a retry.
  int calls = 0;
  errno = EINTR;

  const int result = retry_on_eintr([&] {
    ++calls;
    return 0;
  });

  EXPECT_EQ(result, 0);
  EXPECT_EQ(calls, 1);
}

TEST(PosixCallTest, ABlockingReadInterruptedBySignalsCompletes) {
  // A handler installed without SA_RESTART makes a blocking read fail with EINTR.
  struct sigaction action {};
  action.sa_handler = [](int) {};
  sigemptyset(&action.sa_mask);
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::atomic<int> calls{0};
  const pthread_t reader = ::pthread_self();
  // Signal the reader until it has been interrupted (its second call), then give it a byte.
  std::thread signaller([&] {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (calls.load() < 2 && std::chrono::steady_clock::now() < deadline) {
      ::pthread_kill(reader, SIGUSR1);
      std::this_thread::sleep_for(5ms);
    }
    const char byte = 'x';
    (void)::write(fds[1], &byte, 1);
  });

  char got = 0;
  const ssize_t n = retry_on_eintr([&] {
    calls.fetch_add(1);
    return ::read(fds[0], &got, 1);
  });

  signaller.join();
  ::close(fds[0]);
  ::close(fds[1]);
  ::sigaction(SIGUSR1, &previous, nullptr);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(got, 'x');
  EXPECT_GE(calls.load(), 2) << "the read was never interrupted";
}

}  // namespace
}  // namespace tilepool
