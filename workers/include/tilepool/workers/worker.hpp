#pragma once
/// @file
/// A worker process: what `tilepool-worker` runs, and what any program linked with tilepool can
/// become when a pool starts it as its own worker (the way Python's spawn start method re-runs
/// the main module): call serve_as_worker_if_asked() first thing in main().

#include <sys/types.h>

#include <optional>
#include <string_view>

#include "tilepool/workers/tile_loop.hpp"

namespace tilepool {

/// The first argument of a worker process's command line.
inline constexpr std::string_view kWorkerFlag = "--tilepool-worker";

/// If this process was started as a pool's worker (argv[1] is kWorkerFlag), serves the pool
/// until it is told to stop or the runner is gone and returns the exit status; otherwise returns
/// nullopt and does nothing. A program that registers its own kernels calls it after registering
/// them, so its workers know them too.
///
///   kWorkerFlag share --control NAME --slot N --parent PID [--backing shm|file:DIR]
///     attaches the control block NAME, says "ready" on stdout, runs the tiles of each job it
///     posts on the job's segments, attached by name;
///   kWorkerFlag copy --parent PID
///     says "ready", then computes tiles whose bytes arrive on stdin and answers on stdout
///     (copy_protocol.hpp).
std::optional<int> serve_as_worker_if_asked(int argc, char** argv);

/// Makes this process die with `parent`: SIGKILL when it dies (PR_SET_PDEATHSIG), an exit now
/// if it died already, and with `watch_stdin` an exit at EOF on stdin (the runner closed our pipe).
void die_with_parent(pid_t parent, bool watch_stdin);

/// For a worker process: std::terminate (a kernel that calls it, throws from a destructor, or
/// throws past a noexcept function) aborts without libstdc++'s "terminate called..." lines on
/// the user's terminal; the runner reports the death (SIGABRT) with the kernel and tile.
void abort_quietly_on_terminate() noexcept;

}  // namespace tilepool
