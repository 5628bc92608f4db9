// What the array sources share: stamps of the objects a job reads, owned segment arrays.
#include "sources/source_support.hpp"

#include "detail/launcher.hpp"

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool::detail {
namespace {

bool same_time(const struct timespec& a, const struct timespec& b) noexcept {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

FileStamp FileStamp::of(const std::filesystem::path& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw Error(Errc::job_failed, fmt::format("{}: removed while the job ran ({}); nothing was published", what,
                                              std::strerror(errno)));
  }
  return FileStamp{st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
}

std::string FileStamp::difference_from(const FileStamp& before) const {
  if (device != before.device || inode != before.inode) return "another file took its name";
  if (size != before.size) return fmt::format("its size went from {} to {} bytes", before.size, size);
  if (!same_time(modified, before.modified)) return "its data was written";
  // Only its ctime moved: a chmod, chown or new link does that, and so does data written with
  // its old mtime put back (cp -p, rsync -t), which cannot be told apart from them.
  if (!same_time(changed, before.changed)) {
    return "its status changed (ctime): a chmod, chown or link, or data written with its old mtime put back";
  }
  return "";
}

void check_stamp_unchanged(const std::filesystem::path& path, const std::string& what, const FileStamp& before) {
  const std::string diff = FileStamp::of(path, what).difference_from(before);
  if (!diff.empty()) {
    throw Error(Errc::job_failed, fmt::format("{}: changed while the job ran ({}); its result would mix old and new data, "
                                              "so nothing was published", what, diff));
  }
}

JobArray owned_array(ArraySegment segment) {
  auto owner = std::make_shared<ArraySegment>(std::move(segment));
  const AnyArray view = owner->array();
  return JobArray{AnyArray(owner, view.data(), view.dtype(), view.shape()), owner->name(), owner->segment().backing(),
                  owner->segment().identity()};
}

bool usable_in_place(Mode mode, const JobArray& array, ArrayRole role) {
  const LauncherRow& row = launcher_row(mode);
  if (row.arrays == ArraysIn::segments) return !array.segment.empty();
  if (role == ArrayRole::output && row.output_sharing == Sharing::shared_with_children) {
    return !array.segment.empty() || is_shared_with_children(array.array.data(), array.array.bytes());
  }
  return true;
}

}  // namespace tilepool::detail
