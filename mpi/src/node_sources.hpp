#pragma once
// Private to mpi/: the array sources of one node's part of a job. They adapt the job layer's
// sources to a node that holds only the bytes its tiles need; the job itself is run_job's, as
// on one machine (its output is the job layer's array_target over a sparse array).

#include <memory>
#include <optional>
#include <vector>

#include "tilepool/runner/job.hpp"

namespace tilepool::mpi {

/// A source read only in `ranges` of its data (this node's tiles' input regions): opens into
/// a full-size sparse array (ArraySource::open_ranges) and counts the bytes it read.
class RangedSource final : public ArraySource {
 public:
  RangedSource(std::shared_ptr<ArraySource> inner, std::vector<ByteRange> ranges)
      : inner_(std::move(inner)), ranges_(std::move(ranges)) {}
  [[nodiscard]] std::string text() const override { return inner_->text(); }
  [[nodiscard]] ArraySpec spec() override { return inner_->spec(); }
  [[nodiscard]] JobArray open(const ArrayPlacement& placement) override {
    return inner_->open_ranges(placement, ranges_, bytes_read_);
  }
  void check_unchanged() const override { inner_->check_unchanged(); }
  [[nodiscard]] std::uint64_t bytes_read() const noexcept { return bytes_read_; }

 private:
  std::shared_ptr<ArraySource> inner_;
  std::vector<ByteRange> ranges_;
  std::uint64_t bytes_read_ = 0;
};

/// An input whose bytes another node sends (a `shm:` segment exists on rank 0's node only):
/// its spec is known from rank 0 first, its array is made and received before the job runs.
class ShippedSource final : public ArraySource {
 public:
  ShippedSource(std::string text, ArraySpec spec) : text_(std::move(text)), spec_(std::move(spec)) {}
  [[nodiscard]] std::string text() const override { return text_; }
  [[nodiscard]] ArraySpec spec() override { return spec_; }
  /// The array that received this node's bytes.
  void set_array(JobArray array) { array_ = std::move(array); }
  [[nodiscard]] JobArray open(const ArrayPlacement& /*placement*/) override { return *array_; }

 private:
  std::string text_;
  ArraySpec spec_;
  std::optional<JobArray> array_;
};

}  // namespace tilepool::mpi
