#pragma once
/// @file
/// Names of job-private segments, and telling whether their owner is still alive.
///
/// A job's own segments are named "tilepool-<pid>-<starttime>-<random>-<role>": the owner's
/// pid and start time (so a reused pid is not mistaken for the owner) and 64 random bits (so
/// names cannot be predicted and pre-created by someone else).

#include <optional>
#include <string>
#include <string_view>

#include "tilepool/shared/process_owner.hpp"

namespace tilepool {

/// A fresh job-private name for this process: "tilepool-<pid>-<start>-<random>-<role>".
std::string job_segment_name(std::string_view role);

/// The owner a job-private name records; nullopt if `name` is not one. Whether it is alive:
/// owner_alive (process_owner.hpp, the one liveness check).
using SegmentOwner = ProcessOwner;
std::optional<SegmentOwner> parse_job_segment_name(std::string_view name);
/// Checks a name a user gives a segment (put, create, an output's shm:NAME): a valid segment
/// name (validate_segment_name) that is not of the form of a job's own names, which gc removes
/// once the pid in them is gone. Throws Error(usage).
void validate_user_segment_name(std::string_view name);

}  // namespace tilepool
