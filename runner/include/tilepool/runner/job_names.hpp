#pragma once
/// @file
/// Names of job-private segments, and telling whether their owner is still alive.
///
/// A job's own segments are named "tilepool-<pid>-<starttime>-<random>-<role>": the owner's
/// pid and start time (so a reused pid is not mistaken for the owner) and 64 random bits (so
/// names cannot be predicted and pre-created by someone else).

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace tilepool {

/// A fresh job-private name for this process: "tilepool-<pid>-<start>-<random>-<role>".
std::string job_segment_name(std::string_view role);

/// The owner a job-private name records; nullopt if `name` is not one.
struct SegmentOwner {
  pid_t pid = 0;
  unsigned long long start_time = 0;
};
std::optional<SegmentOwner> parse_job_segment_name(std::string_view name);

/// True if the process `owner` names is running (same pid and same start time).
bool owner_alive(const SegmentOwner& owner);

/// A process's start time in clock ticks since boot (/proc/PID/stat field 22); nullopt if gone.
std::optional<unsigned long long> process_start_time(pid_t pid);

}  // namespace tilepool
