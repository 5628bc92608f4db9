#pragma once
// Private to runner/: what the array sources and output targets share.

#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "tilepool/runner/job.hpp"
#include "tilepool/shared/array_segment.hpp"

namespace tilepool::detail {

/// What a file or segment looked like when a job opened it: the object and its last change.
/// Comparing two stamps tells whether the data changed under the job (rewritten in place,
/// replaced, truncated, grown). Timestamps have the filesystem's resolution (nanoseconds on
/// ext4, XFS and tmpfs, taken from a clock that ticks every few milliseconds).
struct FileStamp {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  struct timespec modified {};
  struct timespec changed {};
  /// The stamp of the object at `path` now; throws Error(job_failed) naming `what` if it is gone.
  static FileStamp of(const std::filesystem::path& path, const std::string& what);
  /// "" if equal, else what differs ("its size went from 4096 to 0 bytes").
  [[nodiscard]] std::string difference_from(const FileStamp& before) const;
};

/// Throws Error(job_failed) "WHAT changed while the job ran (...): nothing was published" if
/// the object at `path` no longer matches `before`.
void check_stamp_unchanged(const std::filesystem::path& path, const std::string& what, const FileStamp& before);

/// A segment as a JobArray that owns it: the segment (and its name, if it owns one) goes when
/// the last copy of the array goes.
JobArray owned_array(ArraySegment segment);

/// True if `array` is reachable by `mode`'s workers as it is, in `role`: share mode attaches
/// only named segments; fork-mode children write only memory shared with them; copy and
/// threads modes use the runner's memory.
bool usable_in_place(Mode mode, const JobArray& array, ArrayRole role);

}  // namespace tilepool::detail
