// The exit status of a failed command: the one mapping from error codes, for tilepool and
// tilepool-mpi alike.
#include "commands.hpp"

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

}  // namespace tilepool::cli
