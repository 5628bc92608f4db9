#pragma once
/// @file
/// Who owns a job-private object (a segment, a hidden temporary file), and whether that owner
/// is still alive: written once, for every sweep of dead owners' leftovers.
///
/// A pid alone does not name a process for long: after the owner dies the kernel hands its pid
/// to another process, and kill(pid, 0) then says "alive". A pid together with the process's
/// start time (/proc/PID/stat field 22, clock ticks since boot) names one process for the life
/// of the machine: a process that later gets the same pid starts later.

#include <sys/types.h>

#include <optional>

namespace tilepool {

/// A process, named so that a reused pid does not match: its pid and its start time. A plain
/// value (recorded in names and headers, compared across processes).
struct ProcessOwner {
  pid_t pid = 0;
  unsigned long long start_time = 0;  ///< clock ticks since boot, /proc/PID/stat field 22
  friend bool operator==(const ProcessOwner&, const ProcessOwner&) = default;
};

/// A process's start time in clock ticks since boot (/proc/PID/stat field 22); nullopt if no
/// process has that pid (or /proc cannot tell). Reads /proc; thread-safe.
std::optional<unsigned long long> process_start_time(pid_t pid);

/// This process as an owner (its pid and start time; computed once per process, and again
/// after a fork, whose child has its own). Thread-safe. Throws Error (system, or usage at the
/// descriptor limit) if /proc cannot tell the start time: a name made with a wrong owner would
/// be swept as a dead process's.
ProcessOwner this_process();

/// True if the process `owner` names is running: a process has that pid and started at that
/// time. A live process with the pid but another start time (the pid was reused) is not the
/// owner: false. A zombie is not alive either: it runs no code again, and where nothing reaps it
/// (a container whose init reaps nothing) its segments would otherwise stay for good. Thread-safe.
bool owner_alive(const ProcessOwner& owner);

}  // namespace tilepool
