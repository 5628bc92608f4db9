// sum: a reduction. Each tile sums its elements into a partial (float64, or int64 for
// integer and bool inputs, wrapping like numpy); the runner adds the partials in tile order,
// so the result does not depend on how many workers ran or in which order.
#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"

namespace tilepool::kernels {
namespace {

template <class T>
class Sum final : public BoundKernel {
 public:
  explicit Sum(std::span<const AnyArray> inputs) : in_(inputs[0].as<const T>()) {}

  void run_tile(const Box& box, TileResult& result) override {
    const auto in = in_.tile(box);
    if constexpr (std::is_floating_point_v<T>) {
      double s = 0;
      for (std::int64_t p = 0; p < in.plane_count(); ++p) s += in.plane(p).template cast<double>().sum();
      result.f64 = s;
    } else {
      std::uint64_t s = 0;  // unsigned: wraps instead of overflowing
      for (std::int64_t p = 0; p < in.plane_count(); ++p) {
        s += in.plane(p).unaryExpr([](T x) { return static_cast<std::uint64_t>(static_cast<std::int64_t>(x)); }).sum();
      }
      result.i64 = static_cast<std::int64_t>(s);
    }
  }

 private:
  ArrayView<const T> in_;
};

template <class T> struct MakeSum {
  static constexpr bool kAccepted = true;
  static std::unique_ptr<BoundKernel> make(std::span<const AnyArray> in, const AnyArray&, const Params&) {
    return std::make_unique<Sum<T>>(in);
  }
};

ArraySpec sum_spec(std::span<const ArraySpec> inputs, const Params& /*params*/) {
  return ArraySpec{dtype_is_float(inputs[0].dtype) ? DType::float64 : DType::int64, Shape{}};
}


}  // namespace

const KernelDef kSum{
    .name = "sum", .summary = "the sum of a (float64; int64 for integer and bool inputs)", .arity = 1,
    .dtypes = all_dtypes(), .reduction = Reduction::sum,
    .output_spec = sum_spec, .iteration_shape = input_shape, .bind = bind_for_dtype<MakeSum>};

}  // namespace tilepool::kernels
