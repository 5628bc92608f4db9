#pragma once
/// @file
/// The one exception type that tilepool's libraries throw, and TILEPOOL_CHECK for broken invariants.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

namespace tilepool {

/// What kind of failure an Error reports; the CLI maps it to an exit status (runner/cli/
/// exit_status.cpp: the statuses below). A worker's error reaches the runner with its kind
/// (ControlBlock::report_error).
enum class Errc {
  usage,       ///< the caller asked for something meaningless (bad flag, bad tile)      -> exit 2
  bad_input,   ///< an input file or segment is missing, malformed or mismatched         -> exit 2
  exists,      ///< a segment or file that would be created already exists               -> exit 2
  no_space,    ///< not enough room in the backing store (e.g. /dev/shm)                 -> exit 2
  system,      ///< an operating-system call failed                                      -> exit 1
  job_failed,  ///< a kernel or a worker failed while running a job                      -> exit 1
  interrupted, ///< the job was stopped by a signal                                      -> 128+signal
};

/// tilepool's exception: a message a user can act on (what, where, expected vs found), an Errc
/// and, for a failed system call, its errno. Thread-safe to copy; carries no OS resources.
class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message, int sys_errno = 0)
      : std::runtime_error(message), code_(code), sys_errno_(sys_errno) {}
  [[nodiscard]] Errc code() const noexcept { return code_; }
  /// The errno of the system call that failed (system_error), or 0. A worker's reaches the
  /// runner with its kind (ControlBlock::report_error).
  [[nodiscard]] int sys_errno() const noexcept { return sys_errno_; }

 private:
  Errc code_;
  int sys_errno_;
};

/// The Errc whose value another process sent (a worker's error: the control block, copy mode's
/// pipe, a worker that could not start), or nullopt if `code` is no Errc.
std::optional<Errc> errc_from_wire(std::int32_t code) noexcept;

/// Builds an Error for a failed system call: "<context>: <strerror(err)>" with sys_errno() `err`, Errc::no_space for
/// a full store (ENOSPC, EDQUOT, EFBIG), else Errc::system; EMFILE (the descriptor limit) is
/// Errc::usage, naming the limit and how to raise it.
Error system_error(const std::string& context, int err);

namespace detail {
[[noreturn]] inline void check_failed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "tilepool: internal invariant broken: %s (%s:%d)\n", expr, file, line);
  std::abort();
}
}  // namespace detail

}  // namespace tilepool

/// Aborts loudly when an internal invariant does not hold; never compiled out.
#define TILEPOOL_CHECK(expr) \
  ((expr) ? static_cast<void>(0) : ::tilepool::detail::check_failed(#expr, __FILE__, __LINE__))
