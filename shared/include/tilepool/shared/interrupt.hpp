#pragma once
/// @file
/// The user's request to stop (SIGINT, SIGTERM, SIGHUP), noted by a signal handler and looked
/// at wherever waiting could last: between worker starts, in a job's wait loop, while a plugin
/// loads in a probe child, while a file is reserved block by block. It lives in the lowest
/// library so that every layer can look at it.

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
/// Throws Error(interrupted) naming the signal if one asked us to stop. A front end calls it
/// once more just before it publishes a result, so that nothing is published after Ctrl-C.
void throw_if_interrupted();

}  // namespace tilepool
