// Named segments (`shm:NAME`) as an array source and an output target. An input segment is
// attached read-only and pinned by identity; an output is built under a job-owned name
// ("tilepool-<pid>-...-out", which `gc` collects if the runner dies) and renamed onto NAME
// after success.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <optional>

#include "sources/source_support.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool::detail {
namespace {

class SegmentSource final : public ArraySource {
 public:
  SegmentSource(std::string name, Backing backing) : name_(std::move(name)), backing_(std::move(backing)) {}

  [[nodiscard]] std::string text() const override { return "shm:" + name_; }

  [[nodiscard]] ArraySpec spec() override {
    // Read-only: a segment the user may only read (mode 0400, a read-only mount) is an input
    // too, and a kernel that writes into its input faults instead of changing the user's data.
    if (!segment_) segment_ = ArraySegment::attach(name_, backing_, MapOptions{.populate = false, .read_only = true});
    return ArraySpec{segment_->dtype(), segment_->shape()};
  }

  [[nodiscard]] JobArray open(const ArrayPlacement& /*placement*/) override {
    (void)spec();
    stamp_ = FileStamp::of(backing_.path_of(name_), text());
    // Every mode reaches a segment as it is: share-mode workers attach it by name (pinned to
    // this object), the others read this process's mapping.
    return JobArray{segment_->array(), name_, backing_, segment_->segment().identity()};
  }

  [[nodiscard]] bool local_only() const noexcept override { return true; }

  void check_unchanged() const override {
    if (stamp_) check_stamp_unchanged(backing_.path_of(name_), text(), *stamp_);
  }

 private:
  std::string name_;
  Backing backing_;
  std::optional<ArraySegment> segment_;
  std::optional<FileStamp> stamp_;
};

class SegmentTarget final : public OutputTarget {
 public:
  SegmentTarget(std::string name, Backing backing) : name_(std::move(name)), backing_(std::move(backing)) {}

  [[nodiscard]] std::string text() const override { return "shm:" + name_; }

  void check(bool force) override {
    if (!force && segment_exists(name_, backing_)) throw Error(Errc::exists, fmt::format("segment '{}' already exists", name_));
    const std::filesystem::path dir = backing_.directory();
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      throw Error(Errc::bad_input, fmt::format("{}: cannot create segments in {}: {}", text(), dir.string(), std::strerror(errno)));
    }
    // Whether the segment can be given its name without replacing is known now, not once the job is done.
    check_publishable(backing_.path_of(name_), force);
  }

  [[nodiscard]] JobArray create(const ArraySpec& spec, const ArrayPlacement& /*placement*/) override {
    // A segment in every mode: fork children share its MAP_SHARED pages, share-mode workers
    // attach it by its job-owned name.
    built_ = std::make_shared<ArraySegment>(
        ArraySegment::create(job_segment_name("out"), spec.dtype, spec.shape, backing_, MapOptions{.populate = false}));
    const AnyArray view = built_->array();
    return JobArray{AnyArray(built_, view.data(), view.dtype(), view.shape()), built_->name(), backing_,
                    built_->segment().identity()};
  }

  // The name lives until `tilepool rm NAME`.
  void publish(bool force) override { built_->segment().publish(name_, force); }

 private:
  std::string name_;
  Backing backing_;
  std::shared_ptr<ArraySegment> built_;
};

}  // namespace

std::shared_ptr<ArraySource> segment_source(const std::string& name, const Backing& backing) {
  validate_segment_name(name);
  return std::make_shared<SegmentSource>(name, backing);
}
std::shared_ptr<OutputTarget> segment_target(const std::string& name, const Backing& backing) {
  validate_user_segment_name(name);
  return std::make_shared<SegmentTarget>(name, backing);
}

}  // namespace tilepool::detail
