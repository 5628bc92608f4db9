// ArrayPlacement: where each mode keeps a job's arrays, the one place that decides it.
#include <memory>

#include "detail/launcher.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

// A job-owned segment as a JobArray: the array owns the segment, which removes its name when
// the last copy of the array goes.
JobArray owned(ArraySegment segment) {
  auto owner = std::make_shared<ArraySegment>(std::move(segment));
  const AnyArray view = owner->array();
  return JobArray{AnyArray(owner, view.data(), view.dtype(), view.shape()), owner->name(), owner->segment().backing(),
                  owner->segment().identity()};
}

const char* role_name(ArrayRole role) noexcept { return role == ArrayRole::input ? "in" : "out"; }

// The mode's launcher row says where its arrays live.
bool in_segments(Mode mode) noexcept { return detail::launcher_row(mode).arrays == detail::ArraysIn::segments; }

Sharing sharing_for(Mode mode, ArrayRole role) noexcept {
  return role == ArrayRole::output ? detail::launcher_row(mode).output_sharing : Sharing::private_to_process;
}

}  // namespace

JobArray ArrayPlacement::make(DType dtype, const Shape& shape, ArrayRole role) const {
  // Not pre-faulted: posix_fallocate has made the pages, and each is mapped by the process
  // that first touches it.
  if (in_segments(mode_)) {
    return owned(ArraySegment::create(job_segment_name(role_name(role)), dtype, shape, backing_, MapOptions{.populate = false}));
  }
  return JobArray{allocate_array(dtype, shape, sharing_for(mode_, role)), ""};
}

JobArray ArrayPlacement::make_sparse(DType dtype, const Shape& shape, ArrayRole role, std::span<const ByteRange> data_ranges) const {
  if (in_segments(mode_)) {
    return owned(ArraySegment::create_sparse(job_segment_name(role_name(role)), dtype, shape, data_ranges, backing_));
  }
  return make(dtype, shape, role);
}

JobArray ArrayPlacement::load_npy(const std::filesystem::path& path, ArrayRole role) const {
  if (role == ArrayRole::input) {
    if (auto mapped = ArraySegment::map_npy_file(path)) return owned(std::move(*mapped));
  }
  // Converted (or an output): one read() of the file straight into the segment.
  if (in_segments(mode_)) return owned(ArraySegment::load_npy(path, job_segment_name(role_name(role)), backing_));
  const npy::Header h = npy::read_file_header(path);
  JobArray a{allocate_array(h.dtype, h.shape, sharing_for(mode_, role)), ""};
  npy::read_file_data(path, h, std::span(a.array.data(), a.array.bytes()));
  return a;
}

}  // namespace tilepool
