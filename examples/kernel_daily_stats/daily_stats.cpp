// daily_stats: the mean and standard deviation over the leading axis of a (days, rows, cols)
// grid, as numpy's a.mean(axis=0) and a.std(axis=0) (population: divided by days). The output,
// (2, rows, cols) float64 (plane 0 the mean, plane 1 the standard deviation), has another shape
// than the input: the kernel declares it (output_spec), tiles the output (iteration_shape; with
// `--tile R,C` the leading axis of 2 is whole, so a tile is a block of pixels) and declares that
// a tile reads every day of its pixels (input_region), which is what copy mode ships.
#include <cmath>
#include <memory>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

using tilepool::ArraySpec;
using tilepool::Box;

// The input region of an output tile: every day, the tile's rows and columns.
Box every_day(std::size_t /*input*/, const Box& tile, std::span<const ArraySpec> inputs, const tilepool::Params& /*params*/) {
  Box r = tile;
  r.lo[0] = 0;
  r.hi[0] = inputs[0].shape[0];
  return r;
}

ArraySpec stats_spec(std::span<const ArraySpec> inputs, const tilepool::Params& /*params*/) {
  const tilepool::Shape& s = inputs[0].shape;
  if (s.size() != 3 || s[0] == 0) {
    throw tilepool::Error(tilepool::Errc::bad_input, "daily_stats: input has shape " + tilepool::format_shape(s) +
                                                         "; expected (days, rows, cols) with days >= 1");
  }
  return ArraySpec{tilepool::DType::float64, tilepool::Shape{2, s[1], s[2]}};
}

template <class T>
class DailyStats final : public tilepool::BoundKernel {
 public:
  DailyStats(std::span<const tilepool::AnyArray> inputs, const tilepool::AnyArray& output)
      : in_(inputs[0].as<const T>()), out_(output.as<double>()) {}

  void run_tile(const Box& box, tilepool::TileResult& /*result*/) override {
    const auto days = in_.tile(every_day(0, box, specs(), tilepool::Params{}));  // one plane per day
    const auto out = out_.tile(box);                          // plane 0: mean, 1: std (those in box)
    const Eigen::Index h = box.extent(1), w = box.extent(2);
    Eigen::ArrayXXd sum = Eigen::ArrayXXd::Zero(h, w);
    for (std::int64_t d = 0; d < days.plane_count(); ++d) sum += days.plane(d).template cast<double>().array();
    const auto n = static_cast<double>(days.plane_count());
    const Eigen::ArrayXXd mean = sum / n;
    Eigen::ArrayXXd squares = Eigen::ArrayXXd::Zero(h, w);
    for (std::int64_t d = 0; d < days.plane_count(); ++d) {
      squares += (days.plane(d).template cast<double>().array() - mean).square();
    }
    const Eigen::ArrayXXd std_dev = (squares / n).sqrt();
    for (std::int64_t p = 0; p < out.plane_count(); ++p) {
      out.plane(p) = box.lo[0] + p == 0 ? mean.matrix() : std_dev.matrix();
    }
  }

 private:
  std::array<ArraySpec, 1> specs() const { return {ArraySpec{tilepool::dtype_of_v<T>, in_.shape()}}; }
  tilepool::ArrayView<const T> in_;
  tilepool::ArrayView<double> out_;
};

template <class T>
struct MakeDailyStats {
  static constexpr bool kAccepted = std::is_floating_point_v<T>;
  static std::unique_ptr<tilepool::BoundKernel> make(std::span<const tilepool::AnyArray> in, const tilepool::AnyArray& out,
                                                     const tilepool::Params& /*params*/) {
    return std::make_unique<DailyStats<T>>(in, out);
  }
};

const tilepool::KernelDef kDailyStats{
    .name = "daily_stats",
    .summary = "(days, rows, cols) -> (2, rows, cols): mean and standard deviation over days (float64 out)",
    .arity = 1,
    .dtypes = tilepool::float_dtypes(),
    .input_region = every_day,
    .output_spec = stats_spec,
    .iteration_shape = tilepool::output_shape,
    .bind = tilepool::bind_for_dtype<MakeDailyStats>,
};

}  // namespace

TILEPOOL_PLUGIN(kDailyStats)
