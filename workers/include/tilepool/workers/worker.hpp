#pragma once
/// @file
/// A worker process: what `tilepool-worker` runs, and what any program linked with tilepool can
/// become when a pool starts it as its own worker (the way Python's spawn start method re-runs
/// the main module): call serve_as_worker_if_asked() first thing in main().

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

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

/// What ends a kernel thread that called pthread_exit() (its unwinding cannot be caught and
/// dropped: libgcc aborts with "FATAL: exception not rethrown"). The worker reports the job's
/// error naming the kernel first, then calls it with how the kernel ended ("called
/// pthread_exit() on tile 3 [0:4, 0:4]"). Unset (a worker process): the process ends with
/// status 1. Threads mode sets one for its threads: they are the runner's.
using ThreadEndHandler = void (*)(const std::string& how);
/// Sets the calling thread's ThreadEndHandler.
void set_thread_end_handler(ThreadEndHandler handler) noexcept;
/// Sets the ThreadEndHandler of threads that have none of their own (the front end's: the CLI's
/// says so in one line and removes its job segments).
void set_process_thread_end_handler(ThreadEndHandler handler) noexcept;

/// Where a tile is on its way through a worker.
enum class TilePoint {
  claimed,  ///< after claiming the tile, before computing it
  written,  ///< after writing the tile's output, before marking it done
};
/// Called by a worker at each TilePoint of each tile (tracing; the fault tests kill the worker
/// there), on the worker's thread.
using TileObserver = std::function<void(TilePoint, std::int64_t tile)>;

/// Where the tile observers of this process's workers come from. The workers a program starts
/// — a share-mode worker (serve_as_worker_if_asked), a copy-mode worker, a fork-mode child —
/// each call make_tile_observer() once as they start and observe every tile with what it
/// returns. Unset (the default) they observe nothing: production programs set nothing. A
/// program sets it before it starts workers (the fault tests' own CLI and worker executables
/// do, from tests/fault_injection/); not thread-safe against a worker starting meanwhile.
using TileObserverFactory = std::function<TileObserver()>;
void set_tile_observer_factory(TileObserverFactory factory);
/// The observer for a worker starting now: the factory's, or empty. Throws what the factory throws.
TileObserver make_tile_observer();

/// Makes this process die with `parent`: SIGKILL when it dies (PR_SET_PDEATHSIG), an exit now
/// if it died already, and with `watch_stdin` an exit at EOF on stdin (the runner closed our pipe).
void die_with_parent(pid_t parent, bool watch_stdin);

/// For a worker process: std::terminate (a kernel that calls it, throws from a destructor, or
/// throws past a noexcept function) aborts without libstdc++'s "terminate called..." lines on
/// the user's terminal; the runner reports the death (SIGABRT) with the kernel and tile.
void abort_quietly_on_terminate() noexcept;

}  // namespace tilepool
