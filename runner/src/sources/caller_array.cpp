// A caller's memory as an input or output (the C++ API's and the Python module's arrays), and
// a new array as the output. Used where they are when the mode's workers can reach them;
// otherwise copied once, and the copy counted.
#include <algorithm>
#include <cstring>
#include <fmt/format.h>

#include "detail/launcher.hpp"
#include "sources/source_support.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool::detail {
namespace {

ArraySpec spec_of(const AnyArray& a) { return ArraySpec{a.dtype(), a.shape()}; }

class CallerArraySource final : public ArraySource {
 public:
  CallerArraySource(JobArray array, std::string text) : array_(std::move(array)), text_(std::move(text)) {}

  [[nodiscard]] std::string text() const override { return text_; }
  [[nodiscard]] ArraySpec spec() override { return spec_of(array_.array); }

  [[nodiscard]] JobArray open(const ArrayPlacement& placement) override {
    copied_ = 0;
    if (usable_in_place(placement.mode(), array_, ArrayRole::input)) return array_;
    JobArray copy = placement.make(array_.array.dtype(), array_.array.shape(), ArrayRole::input);
    std::memcpy(copy.array.data(), array_.array.data(), array_.array.bytes());
    copied_ = array_.array.bytes();
    return copy;
  }

  [[nodiscard]] bool local_only() const noexcept override { return array_.segment.empty(); }
  [[nodiscard]] std::uint64_t bytes_copied() const noexcept override { return copied_; }

 private:
  JobArray array_;
  std::string text_;
  std::uint64_t copied_ = 0;
};

class CallerArrayTarget final : public OutputTarget {
 public:
  CallerArrayTarget(JobArray array, std::string text) : array_(std::move(array)), text_(std::move(text)) {}

  [[nodiscard]] std::string text() const override { return text_; }
  void check(bool /*force*/) override {}

  [[nodiscard]] JobArray create(const ArraySpec& spec, const ArrayPlacement& placement) override {
    const AnyArray& a = array_.array;
    if (a.dtype() != spec.dtype || a.shape() != spec.shape) {
      throw Error(Errc::bad_input, fmt::format("{}: is {} {}; the kernel's output is {} {}", text_, dtype_name(a.dtype()),
                                               format_shape(a.shape()), dtype_name(spec.dtype), format_shape(spec.shape)));
    }
    copied_ = 0;
    // An output that is also an input (out=a) is built apart and copied in after: a tile must
    // not read what another tile has already written (a halo, a matmul row block).
    if (usable_in_place(placement.mode(), array_, ArrayRole::output) && !overlaps_an_input()) {
      built_.reset();
      return array_;
    }
    built_ = placement.make(spec.dtype, spec.shape, ArrayRole::output);
    return *built_;
  }

  void publish(bool /*force*/) override {
    if (!built_) return;
    std::memcpy(array_.array.data(), built_->array.data(), array_.array.bytes());
    copied_ = array_.array.bytes();
    built_.reset();
  }

  [[nodiscard]] AnyArray result() const override { return array_.array; }
  [[nodiscard]] std::uint64_t bytes_copied() const noexcept override { return copied_; }
  void set_inputs(std::span<const JobArray> inputs) override { inputs_.assign(inputs.begin(), inputs.end()); }

 private:
  // The same memory, or another mapping of the same file or segment (tp.attach of an input's
  // name, np.load(mmap_mode="r+") of an input file: before, a tile read what another had
  // written, exit 0, or a job that failed had already written over its input).
  bool overlaps_an_input() const {
    const auto* lo = array_.array.data();
    const auto* hi = lo + array_.array.bytes();
    const bool same_memory = std::any_of(inputs_.begin(), inputs_.end(), [&](const JobArray& in) {
      const auto* in_lo = in.array.data();
      return in_lo < hi && lo < in_lo + in.array.bytes();
    });
    if (same_memory) return true;
    // Which object each maps, where any is one: its pinned identity, else /proc/self/maps
    // (read only when an input maps an object: plain arrays cost nothing).
    const auto object_of = [](const JobArray& a) { return a.identity ? a.identity : mapped_object_at(a.array.data()); };
    if (std::none_of(inputs_.begin(), inputs_.end(), [](const JobArray& in) { return in.identity.has_value(); })) return false;
    const std::optional<SegmentIdentity> out = object_of(array_);
    return out && std::any_of(inputs_.begin(), inputs_.end(), [&](const JobArray& in) {
             const std::optional<SegmentIdentity> object = object_of(in);
             return object && object->device == out->device && object->inode == out->inode;
           });
  }

  JobArray array_;
  std::string text_;
  std::vector<JobArray> inputs_;
  std::optional<JobArray> built_;
  std::uint64_t copied_ = 0;
};

class NewArrayTarget final : public OutputTarget {
 public:
  [[nodiscard]] std::string text() const override { return "<new array>"; }
  void check(bool /*force*/) override {}

  [[nodiscard]] JobArray create(const ArraySpec& spec, const ArrayPlacement& placement) override {
    if (launcher_row(placement.mode()).arrays != ArraysIn::segments) {
      built_ = placement.make(spec.dtype, spec.shape, ArrayRole::output);
      segment_.reset();
      return *built_;
    }
    // A job segment that this target keeps, so publish() can remove its name while the
    // mapping (and the caller's result) lives on.
    segment_ = std::make_shared<ArraySegment>(ArraySegment::create(job_segment_name("out"), spec.dtype, spec.shape,
                                                                   placement.backing(), MapOptions{.populate = false}));
    const AnyArray view = segment_->array();
    built_ = JobArray{AnyArray(segment_, view.data(), view.dtype(), view.shape()), segment_->name(),
                      segment_->segment().backing(), segment_->segment().identity()};
    return *built_;
  }

  void publish(bool /*force*/) override {
    // No name outlives the job: the result is memory of this process only, gone with it even
    // after SIGKILL.
    if (segment_) segment_->segment().remove_name();
  }

  [[nodiscard]] AnyArray result() const override { return built_ ? built_->array : AnyArray{}; }

 private:
  std::optional<JobArray> built_;
  std::shared_ptr<ArraySegment> segment_;
};

}  // namespace
}  // namespace tilepool::detail

namespace tilepool {

std::shared_ptr<ArraySource> array_source(JobArray array, std::string text) {
  return std::make_shared<detail::CallerArraySource>(std::move(array), std::move(text));
}
std::shared_ptr<OutputTarget> array_target(JobArray array, std::string text) {
  return std::make_shared<detail::CallerArrayTarget>(std::move(array), std::move(text));
}
std::shared_ptr<OutputTarget> new_array_target() { return std::make_shared<detail::NewArrayTarget>(); }

}  // namespace tilepool
