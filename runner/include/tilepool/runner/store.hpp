#pragma once
/// @file
/// The segment store as a user sees it: what is in it, and removing what killed runs left
/// (what `tilepool ls` and `tilepool gc` show and do, and the Python module's list() and gc()).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/backing.hpp"

namespace tilepool {

/// One segment of ours in a store.
struct SegmentInfo {
  std::string name;
  std::uintmax_t bytes = 0;
  std::string kind;   ///< "array", "control" or "other"
  std::string what;   ///< dtype and shape, for arrays: "float64 (365, 16, 16)"
  std::string state;  ///< "named", "live (pid N)" or "stale (pid N gone)"
};

/// Every segment of ours in `backing`'s directory, by name: regular files of this uid that are
/// arrays (NPY) or tilepool job segments. Never throws for an unreadable entry (it is skipped).
std::vector<SegmentInfo> list_segments(const Backing& backing = {});

/// Removes the segments `names` of `backing` (`tilepool rm`, tp.delete): all checked first, then
/// each removed once. Throws, removing nothing, Error(usage) for a live job's own segment
/// ("tilepool-<pid>-..." of a running process) and Error(bad_input) for a name that holds a
/// file list_segments would not show (in a file:DIR store, a file that is neither an NPY array
/// nor a job segment); Error(bad_input) "no such segment: a, b" for names that did not exist
/// (the others are removed).
void remove_named_segments(std::span<const std::string> names, const Backing& backing = {});

/// Removes job segments ("tilepool-<pid>-...") whose owner process is gone; returns their
/// names. Never removes a named segment, or a live owner's.
std::vector<std::string> collect_garbage(const Backing& backing = {});

/// Checks, before any data is copied, that a segment built under a job-owned name can be
/// published as `name` in `backing` without replacing (check_publishable): Error(bad_input)
/// "segment 'NAME': the filesystem of DIR can neither rename without replacing ... nor make hard
/// links" otherwise (a file store on a FUSE mount, say).
void check_segment_publishable(const std::string& name, const Backing& backing);

/// Loads the NPY file `file` into a new segment `name` of `backing` (`tilepool put`, tp.put of a
/// path): refused at once with Error(no_space) if the store has not the room (statvfs), then
/// built under a job-owned name (gc collects it if this process dies midway: Ctrl-C, SIGKILL)
/// and published onto `name` in one step, so the name holds the whole array or nothing.
/// Throws Error(exists) if `name` is taken, Error(bad_input) for a bad file or name.
ArraySegment put_npy(const std::filesystem::path& file, const std::string& name, const Backing& backing);

/// Removes this process's own job segments in `backing` (what collect_garbage would remove
/// once it is gone): for a process about to end without unwinding (threads mode's last words).
/// Never throws.
void remove_own_job_segments(const Backing& backing) noexcept;

}  // namespace tilepool
