// The exit status of a failed command: the one mapping from error codes, and the end of the
// process, for tilepool and tilepool-mpi alike.
#include "commands.hpp"

#include <cstdio>
#include <cstdlib>

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
  std::fflush(nullptr);
#ifdef TILEPOOL_LEAK_CHECK_AT_EXIT
  __lsan_do_leak_check();
#endif
  std::_Exit(status);
}

}  // namespace tilepool::cli
