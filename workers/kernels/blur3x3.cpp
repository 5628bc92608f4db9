// blur3x3: the 3x3 mean over the last two axes, borders clamped (edge replicated). Each tile
// reads a one-element halo around it (its declared input region).
#include <vector>

#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"

namespace tilepool::kernels {
namespace {

// float32 stays float32; everything else is averaged in float64.
template <class T>
using BlurOut = std::conditional_t<std::is_same_v<T, float>, float, double>;

template <class T>
class Blur3x3 final : public BoundKernel {
 public:
  using Out = BlurOut<T>;
  Blur3x3(std::span<const AnyArray> inputs, const AnyArray& output) : in_(inputs[0].as<const T>()), out_(output.as<Out>()) {}

  void run_tile(const Box& box, TileResult& /*result*/) override {
    const int nd = box.ndim;
    const auto row_axis = static_cast<std::size_t>(nd - 2), col_axis = static_cast<std::size_t>(nd - 1);
    const std::int64_t height = in_.shape()[row_axis];
    const std::int64_t width = in_.shape()[col_axis];
    const std::int64_t h = box.extent(nd - 2), w = box.extent(nd - 1);
    // The region this tile reads (kBlur3x3.input_region): the tile and its halo, clamped.
    const Box region = grown_on_last_two_axes(box, 1, in_.shape());
    // Clamped row/column indices of the tile plus its halo, relative to the region: the edge
    // replicates.
    rows_.resize(static_cast<std::size_t>(h + 2));
    cols_.resize(static_cast<std::size_t>(w + 2));
    for (std::int64_t i = 0; i < h + 2; ++i) {
      rows_[static_cast<std::size_t>(i)] = std::clamp<Eigen::Index>(box.lo[row_axis] - 1 + i, 0, height - 1) - region.lo[row_axis];
    }
    for (std::int64_t j = 0; j < w + 2; ++j) {
      cols_[static_cast<std::size_t>(j)] = std::clamp<Eigen::Index>(box.lo[col_axis] - 1 + j, 0, width - 1) - region.lo[col_axis];
    }
    const auto in = in_.tile(region);
    const auto out = out_.tile(box);
    for (std::int64_t p = 0; p < out.plane_count(); ++p) {
      padded_ = in.plane(p)(rows_, cols_).template cast<Out>();
      auto o = out.plane(p);
      o = padded_.block(0, 0, h, w);
      for (int di = 0; di < 3; ++di) {
        for (int dj = 0; dj < 3; ++dj) {
          if (di != 0 || dj != 0) o += padded_.block(di, dj, h, w);
        }
      }
      o /= Out(9);
    }
  }

 private:
  ArrayView<const T> in_;
  ArrayView<Out> out_;
  std::vector<Eigen::Index> rows_, cols_;
  typename PlaneTypes<Out>::Matrix padded_;
};

template <class T> struct MakeBlur {
  static constexpr bool kAccepted = !std::is_same_v<T, bool>;
  static std::unique_ptr<BoundKernel> make(std::span<const AnyArray> in, const AnyArray& out, const Params&) {
    return std::make_unique<Blur3x3<T>>(in, out);
  }
};

Box blur_region(std::size_t /*input*/, const Box& tile, std::span<const ArraySpec> inputs, const Params& /*params*/) {
  return grown_on_last_two_axes(tile, 1, inputs[0].shape);
}

ArraySpec blur_spec(std::span<const ArraySpec> inputs, const Params& /*params*/) {
  if (inputs[0].shape.size() < 2) {
    throw Error(Errc::bad_input, fmt::format("blur3x3: input has shape {}; expected at least 2 axes (it blurs the last two)",
                                             format_shape(inputs[0].shape)));
  }
  const DType out = inputs[0].dtype == DType::float32 ? DType::float32 : DType::float64;
  return ArraySpec{out, inputs[0].shape};
}

}  // namespace

const KernelDef kBlur3x3{
    .name = "blur3x3", .summary = "3x3 mean over the last two axes, borders clamped (float64 out; float32 stays float32)",
    .arity = 1, .dtypes = numeric_dtypes(), .input_region = blur_region,
    .output_spec = blur_spec, .iteration_shape = output_shape, .bind = bind_for_dtype<MakeBlur>};

}  // namespace tilepool::kernels
