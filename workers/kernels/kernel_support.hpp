#pragma once
// Private to workers/kernels: numpy-semantics arithmetic and the building blocks that the
// built-in kernels share (element-wise map kernels, dtype dispatch, shape checks).

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool::kernels {

/// An unsigned type at least as wide as `unsigned`, so integer arithmetic wraps like numpy's
/// instead of overflowing (undefined behaviour) or promoting to int.
template <class T>
using WrapType = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <class T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

struct WrapAdd {
  template <class T> T operator()(T a, T b) const noexcept {
    if constexpr (std::is_same_v<T, bool>) return a || b;  // numpy: bool + bool is logical or
    else return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
  }
};
struct WrapNegate {
  template <class T> T operator()(T a) const noexcept { return static_cast<T>(WrapType<T>(0) - static_cast<WrapType<T>>(a)); }
};
struct WrapSquare {
  template <class T> T operator()(T a) const noexcept { return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(a)); }
};

/// All dtypes but bool.
inline std::vector<DType> numeric_dtypes() {
  return {DType::int8, DType::int16, DType::int32, DType::int64, DType::uint8, DType::uint16,
          DType::uint32, DType::uint64, DType::float32, DType::float64};
}
/// Every supported dtype.
inline std::vector<DType> all_dtypes() {
  auto v = numeric_dtypes();
  v.insert(v.begin(), DType::bool_);
  return v;
}

/// Output spec of element-wise kernels: every input has the first one's shape; same dtype out.
ArraySpec same_as_inputs(std::span<const ArraySpec> inputs, const Params& params);
/// Iteration shape of map kernels: the output's.
Shape output_shape(std::span<const ArraySpec> inputs, const ArraySpec& output);

/// An element-wise kernel: out = Op(in...) plane by plane over the tile, with Eigen.
/// Op::apply(out_plane, in_planes...) assigns an Eigen expression.
template <class T, class Op, std::size_t N>
class MapKernel final : public BoundKernel {
 public:
  MapKernel(std::span<const AnyArray> inputs, const AnyArray& output, Op op) : out_(output.as<T>()), op_(op) {
    for (std::size_t i = 0; i < N; ++i) in_[i] = inputs[i].as<const T>();
  }
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const auto out = out_.tile(box);
    if constexpr (N == 1) {
      const auto a = in_[0].tile(box);
      for (std::int64_t p = 0; p < out.plane_count(); ++p) op_.apply(out.plane(p), a.plane(p));
    } else {
      const auto a = in_[0].tile(box);
      const auto b = in_[1].tile(box);
      for (std::int64_t p = 0; p < out.plane_count(); ++p) op_.apply(out.plane(p), a.plane(p), b.plane(p));
    }
  }

 private:
  std::array<ArrayView<const T>, N> in_;
  ArrayView<T> out_;
  Op op_;
};

/// Binds Make<T>::make for the dtype of the first input: the one place that turns a runtime
/// dtype into a template instance. Make<T>::kAccepted filters the types compiled.
template <template <class> class Make>
std::unique_ptr<BoundKernel> bind_for_dtype(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) {
  const DType dtype = inputs[0].dtype();
  return visit_dtype(dtype, [&]<class T>(std::type_identity<T>) -> std::unique_ptr<BoundKernel> {
    if constexpr (Make<T>::kAccepted) {
      return Make<T>::make(inputs, output, params);
    } else {
      throw Error(Errc::bad_input, "kernel does not accept dtype " + std::string(dtype_name(dtype)));
    }
  });
}

}  // namespace tilepool::kernels
