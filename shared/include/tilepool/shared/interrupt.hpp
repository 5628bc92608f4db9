#pragma once
/// @file
/// The user's request to stop (SIGINT, SIGTERM, SIGHUP), noted by a signal handler and looked
/// at wherever waiting could last: between worker starts, in a job's wait loop, while a plugin
/// loads in a probe child, while a file is reserved block by block. It lives in the lowest
/// library so that every layer can look at it.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>

namespace tilepool {

/// Makes SIGINT, SIGTERM and SIGHUP stop the pool at any moment (starting workers, running a
/// job): Pool::start and Pool::run then throw Error(interrupted), the pool's destructor SIGKILLs
/// its workers and RAII handles remove the job's segments. Workers ignore these signals (a
/// terminal's Ctrl-C reaches the whole process group): the runner alone decides, so a worker is
/// never blamed for the user's signal. The handlers only note the signal (no SA_RESTART: a
/// blocking call returns EINTR).
void install_interrupt_handlers();
/// The first signal that asked us to stop, or 0 (a second Ctrl-C or a SIGTERM after it does not
/// change the answer). Async-signal-safe; thread-safe.
int interrupt_signal() noexcept;
/// Throws Error(interrupted) naming the signal if one asked us to stop, or "cancelled" if the
/// calling thread's CancelScope flag is set. A front end calls it once more just before it
/// publishes a result, so that nothing is published after Ctrl-C.
void throw_if_interrupted();
/// How much a long copy or write moves between two looks at throw_if_interrupted: 64 MiB, a
/// few tens of milliseconds at memory or page-cache speed.
inline constexpr std::size_t kStopCheckBytes = std::size_t{64} << 20;

/// What a process does when a user's stop signal has waited kStuckStopGrace for work that
/// cannot be stopped: threads mode's kernel threads finish the tile they run, however long it
/// takes. A command line ends its process there (its result unpublished, nothing else is owed:
/// tilepool and tilepool-mpi do, guard_command); with no handler (a library caller, the Python
/// module) the wait goes on until the tiles end. The handler gets the signal; it must not return.
using StuckStopHandler = void (*)(int signal);
void set_stuck_stop_handler(StuckStopHandler handler) noexcept;
inline constexpr auto kStuckStopGrace = std::chrono::milliseconds(300);
/// Calls the stuck-stop handler, if there is one, once a stop signal has come and `waited` is
/// past kStuckStopGrace; else returns.
void end_if_stop_is_stuck(std::chrono::steady_clock::duration waited) noexcept;

/// A request to stop that is no signal tilepool's handlers saw: a front end's own flag (Python
/// keeps its SIGINT handler and sets a job's cancel flag on KeyboardInterrupt), or a question
/// it answers when asked (`poll`: Python's handlers run only when the interpreter is asked,
/// with the GIL; a long copy on the calling thread asks between pieces). While a scope lives,
/// the waits of the thread that made it (starting workers, a plugin loading in a probe child,
/// copying a file in) see a set flag or a true answer as they see a signal. Scopes nest; a null
/// flag and an empty poll add nothing. `poll` is called on that thread, only while the scope lives.
class CancelScope {
 public:
  explicit CancelScope(const std::atomic<bool>* cancel, std::function<bool()> poll = {}) noexcept;
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  const std::atomic<bool>* previous_;
  std::function<bool()> poll_;
  const std::function<bool()>* previous_poll_;
};

/// The signal that asked us to stop; else SIGINT if the calling thread's CancelScope flag is
/// set (what a Ctrl-C that Python took stands for); else 0. Not async-signal-safe.
int stop_signal() noexcept;

}  // namespace tilepool
