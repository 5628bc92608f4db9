#pragma once
/// @file
/// Measuring memory: proportional set size of processes.

#include <sys/types.h>

#include <cstdint>
#include <span>

namespace tilepool {

/// The proportional set size of `pid` in bytes (/proc/PID/smaps_rollup), 0 if unreadable.
std::uint64_t pss_bytes(pid_t pid);
/// The sum of pss_bytes over this process and `children`.
std::uint64_t pss_bytes_with(std::span<const pid_t> children);

}  // namespace tilepool
