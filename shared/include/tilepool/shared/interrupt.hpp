#pragma once
/// @file
/// The user's request to stop (SIGINT, SIGTERM, SIGHUP), noted by a signal handler and looked
/// at wherever waiting could last: between worker starts, in a job's wait loop, while a plugin
/// loads in a probe child, while a file is reserved block by block. It lives in the lowest
/// library so that every layer can look at it.

#include <atomic>

namespace tilepool {

/// Makes SIGINT, SIGTERM and SIGHUP stop the pool at any moment (starting workers, running a
/// job): Pool::start and Pool::run then throw Error(interrupted), the pool's destructor SIGKILLs
/// its workers and RAII handles remove the job's segments. Workers ignore these signals (a
/// terminal's Ctrl-C reaches the whole process group): the runner alone decides, so a worker is
/// never blamed for the user's signal. The handlers only note the signal (no SA_RESTART: a
/// blocking call returns EINTR).
void install_interrupt_handlers();
/// The signal that asked us to stop, or 0. Async-signal-safe; thread-safe.
int interrupt_signal() noexcept;
/// Throws Error(interrupted) naming the signal if one asked us to stop, or "cancelled" if the
/// calling thread's CancelScope flag is set. A front end calls it once more just before it
/// publishes a result, so that nothing is published after Ctrl-C.
void throw_if_interrupted();

/// A request to stop that is no signal tilepool's handlers saw: a front end's own flag (Python
/// keeps its SIGINT handler and sets a job's cancel flag on KeyboardInterrupt). While a scope
/// lives, the waits of the thread that made it (starting workers, a plugin loading in a probe
/// child) see the flag as they see a signal. Scopes nest; a null flag adds nothing.
class CancelScope {
 public:
  explicit CancelScope(const std::atomic<bool>* cancel) noexcept;
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const std::atomic<bool>* previous_;
};

/// The signal that asked us to stop; else SIGINT if the calling thread's CancelScope flag is
/// set (what a Ctrl-C that Python took stands for); else 0. Not async-signal-safe.
int stop_signal() noexcept;

}  // namespace tilepool
