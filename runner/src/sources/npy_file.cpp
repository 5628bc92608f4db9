// The `.npy` file format as an array source and an output target. An input that needs no
// conversion is mapped in place, read-only (the page cache is the shared memory); an output is
// an unnamed file in the output's directory, written in place by every mode's workers and
// linked onto its name after success.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <optional>

#include "sources/source_support.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool::detail {
namespace {

namespace fs = std::filesystem;

class NpyFileSource final : public ArraySource {
 public:
  explicit NpyFileSource(std::string path) : path_(std::move(path)) {}

  [[nodiscard]] std::string text() const override { return path_; }

  [[nodiscard]] ArraySpec spec() override {
    if (!header_) header_ = npy::read_file_header(path_);
    return ArraySpec{header_->dtype, header_->shape};
  }

  [[nodiscard]] JobArray open(const ArrayPlacement& placement) override {
    (void)spec();
    stamp_ = FileStamp::of(path_, escape_for_message(path_));
    JobArray array = placement.load_npy(path_, ArrayRole::input);
    check_same_file(array);
    // Mapped in place it is the file (named by this process's descriptor); otherwise it was
    // converted (big-endian, misaligned) into memory of its own: counted (before: 0).
    copied_ = array.backing.is_descriptors() ? 0 : array.array.bytes();
    return array;
  }

  [[nodiscard]] std::uint64_t bytes_copied() const noexcept override { return copied_; }

  [[nodiscard]] JobArray open_ranges(const ArrayPlacement& placement, std::span<const ByteRange> ranges,
                                     std::uint64_t& bytes_read) override {
    (void)spec();
    stamp_ = FileStamp::of(path_, escape_for_message(path_));
    JobArray array = placement.make_sparse(header_->dtype, header_->shape, ArrayRole::input, ranges);
    bytes_read += npy::read_file_ranges(path_, *header_, std::span(array.array.data(), array.array.bytes()), ranges);
    return array;
  }

  void check_unchanged() const override {
    if (stamp_) check_stamp_unchanged(path_, escape_for_message(path_), *stamp_);
  }

 private:
  // A file mapped in place must be the one stamped: a file renamed over the path between the
  // stamp and the mapping would otherwise go unchecked.
  void check_same_file(const JobArray& array) const {
    // Only a file mapped in place (named by the runner's descriptor, fd:PID) is the file
    // itself; a converted one is a segment of its own.
    if (!array.identity || !array.backing.spec().starts_with("fd:")) return;
    if (array.identity->device != static_cast<std::uint64_t>(stamp_->device) ||
        array.identity->inode != static_cast<std::uint64_t>(stamp_->inode)) {
      throw Error(Errc::bad_input, fmt::format("{}: replaced while it was being opened; try again", escape_for_message(path_)));
    }
  }

  std::string path_;
  std::optional<npy::Header> header_;
  std::optional<FileStamp> stamp_;
  std::uint64_t copied_ = 0;
};

class NpyFileTarget final : public OutputTarget {
 public:
  explicit NpyFileTarget(std::string path) : path_(std::move(path)) {}

  [[nodiscard]] std::string text() const override { return path_; }

  void check(bool force) override {
    force_ = force;
    const std::string shown = escape_for_message(path_);
    std::error_code ec;
    const fs::file_status st = fs::symlink_status(path_, ec);
    if (fs::exists(st)) {
      if (fs::is_directory(fs::status(path_, ec))) {
        throw Error(Errc::bad_input, fmt::format("{}: is a directory (expected a FILE.npy path)", shown));
      }
      if (!force) throw Error(Errc::exists, fmt::format("{}: already exists", shown));
      // Replacing means a file (or a symlink: the link itself, not its target), never a
      // device, FIFO or socket that happens to be under the name.
      if (!fs::is_regular_file(st) && !fs::is_symlink(st)) {
        throw Error(Errc::bad_input, fmt::format("{}: exists and is not a regular file (a device, FIFO or socket); "
                                                 "refusing to replace it", shown));
      }
    }
    fs::path dir = fs::path(path_).parent_path();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir, ec)) {
      throw Error(Errc::bad_input, fmt::format("{}: directory {} does not exist", shown, escape_for_message(dir.string())));
    }
    // The output file is made in that directory, with no name until the job succeeded.
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      throw Error(Errc::bad_input, fmt::format("{}: cannot write in directory {}: {}", shown, escape_for_message(dir.string()),
                                               std::strerror(errno)));
    }
    (void)remove_stale_file_temporaries(dir);  // what runs killed there left (no O_TMPFILE, or mid-publish)
  }

  [[nodiscard]] JobArray create(const ArraySpec& spec, const ArrayPlacement& /*placement*/) override {
    // In every mode the workers write the file in place: fork children share its MAP_SHARED
    // pages, share-mode workers attach the runner's descriptor.
    // How it will be published (no name, or a hidden one; linked, or renamed without
    // replacing) is decided now, before the work, from what the directory's filesystem offers.
    built_ = std::make_shared<ArraySegment>(
        ArraySegment::create_npy_file(path_, spec.dtype, spec.shape, PublishOptions{.replace = force_}));
    const AnyArray view = built_->array();
    return JobArray{AnyArray(built_, view.data(), view.dtype(), view.shape()), built_->name(), built_->segment().backing(),
                    built_->segment().identity()};
  }

  void publish(bool force) override { built_->publish_npy_file(path_, force); }

 private:
  std::string path_;
  bool force_ = false;
  std::shared_ptr<ArraySegment> built_;
};

}  // namespace

std::shared_ptr<ArraySource> npy_file_source(const std::string& path) { return std::make_shared<NpyFileSource>(path); }
std::shared_ptr<OutputTarget> npy_file_target(const std::string& path) { return std::make_shared<NpyFileTarget>(path); }

}  // namespace tilepool::detail
