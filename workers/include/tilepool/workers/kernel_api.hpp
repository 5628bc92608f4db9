#pragma once
/// @file
/// The kernel-authoring API: what a kernel needs beyond the KernelDef declaration
/// (kernel.hpp). The built-in kernels are written with it, and so are plugins (plugin.hpp).
///
/// A kernel is a KernelDef (name, arity, accepted dtypes, output spec, iteration shape,
/// input region, bind). `bind` runs once per job in each process that computes tiles and
/// returns a BoundKernel whose run_tile(box, result) computes one tile.
///
/// Shapes and units. Arrays are C order. The iteration space (KernelDef::iteration_shape) is
/// tiled over its last k axes (`--tile t1,...,tk`); leading axes are whole. A tile is a Box
/// of that space, in elements, half-open ([lo, hi) per axis). A TileView of a box is a stack
/// of 2-D planes (Eigen row-major maps with strides) over the box's leading axes: a 3-D box
/// [0:365, 0:4, 4:8] is 365 planes of 4x4; a 1-D box is one plane of one row; a 0-d array
/// is one plane of 1x1.
///
/// Errors. output_spec throws Error(bad_input) for inputs it cannot take (shape, dtype) and
/// Error(usage) for bad parameters: the job is refused before any worker starts, exit 2.
/// run_tile throws Error (or any std::exception): the job fails with the message, naming the
/// kernel, the tile and the worker, exit 1. A kernel must read its inputs only inside the
/// region KernelDef::input_region declares (copy mode ships exactly that region) and write
/// only its tile of the output (tiles run concurrently in different processes, and a tile may
/// run again after its worker crashed).
///
/// Element-wise kernel, in full (`(a - b) / (a + b)` over float32 and float64 inputs):
///
///   struct NdviOp {
///     template <class Out, class A, class B> void apply(Out out, const A& a, const B& b) const {
///       out = ((a - b).array() / (a + b).array()).matrix();
///     }
///   };
///   const tilepool::KernelDef kNdvi{
///       .name = "ndvi", .summary = "(a - b) / (a + b)", .arity = 2, .dtypes = tilepool::float_dtypes(),
///       .output_spec = tilepool::same_as_inputs, .iteration_shape = tilepool::output_shape,
///       .bind = tilepool::bind_map<NdviOp, 2, std::is_floating_point>};

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tilepool/shared/array_view.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// float32, float64.
inline std::vector<DType> float_dtypes() { return {DType::float32, DType::float64}; }
/// Every supported dtype but bool: the integers, then float32, float64.
inline std::vector<DType> numeric_dtypes() {
  return {DType::int8, DType::int16, DType::int32, DType::int64, DType::uint8, DType::uint16,
          DType::uint32, DType::uint64, DType::float32, DType::float64};
}
/// Every supported dtype: bool and numeric_dtypes().
inline std::vector<DType> all_dtypes() {
  auto v = numeric_dtypes();
  v.insert(v.begin(), DType::bool_);
  return v;
}

/// An output_spec for element-wise kernels: every input must have the first one's shape
/// (else Error(bad_input) naming both shapes); the output has that shape and the inputs' dtype.
ArraySpec same_as_inputs(std::span<const ArraySpec> inputs, const Params& params);
/// An iteration_shape that tiles the output: a tile is a box of the output (maps, halos,
/// kernels whose output shape differs from their inputs').
Shape output_shape(std::span<const ArraySpec> inputs, const ArraySpec& output);
/// An iteration_shape that tiles the first input (reductions).
Shape input_shape(std::span<const ArraySpec> inputs, const ArraySpec& output);

/// An element-wise kernel: for each plane p of the tile, op.apply(out.plane(p), in0.plane(p),
/// ...) with N inputs of element type T and an output of element type T, all shaped like the
/// iteration space. Op::apply assigns an Eigen expression to its first argument (an Eigen map,
/// row-major, with strides); the inputs are const maps. Op is copied into the kernel.
template <class T, class Op, std::size_t N>
class MapKernel final : public BoundKernel {
 public:
  static_assert(N >= 1 && N <= kMaxInputs, "MapKernel takes 1 to kMaxInputs inputs");
  MapKernel(std::span<const AnyArray> inputs, const AnyArray& output, Op op) : out_(output.as<T>()), op_(std::move(op)) {
    for (std::size_t i = 0; i < N; ++i) in_[i] = inputs[i].as<const T>();
  }
  void run_tile(const Box& box, TileResult& /*result*/) override { run(box, std::make_index_sequence<N>{}); }

 private:
  template <std::size_t... I>
  void run(const Box& box, std::index_sequence<I...>) {
    const auto out = out_.tile(box);
    const std::array<TileView<const T>, N> in = {in_[I].tile(box)...};
    for (std::int64_t p = 0; p < out.plane_count(); ++p) op_.apply(out.plane(p), in[I].plane(p)...);
  }

  std::array<ArrayView<const T>, N> in_;
  ArrayView<T> out_;
  Op op_;
};

/// A `bind` that dispatches on the first input's dtype: calls Make<T>::make(inputs, output,
/// params) with T the element type (bool, std::int8_t ... double). Only the types for which
/// Make<T>::kAccepted is true are compiled; any other dtype throws Error(bad_input) (check_inputs
/// refuses dtypes outside KernelDef::dtypes before that can happen).
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

/// Accepts every element type (the default filter of bind_map).
template <class T>
struct AnyElementType : std::true_type {};
/// Accepts every element type but bool (numeric_dtypes()).
template <class T>
struct NumericElementType : std::bool_constant<!std::is_same_v<T, bool>> {};

/// A `bind` for an element-wise kernel: a MapKernel<T, Op, N> for the first input's dtype,
/// for the element types T with Accept<T>::value (a trait such as std::is_floating_point).
/// Op is constructed from the job's Params if it can be (`explicit Op(const Params&)`, to read
/// `--param` values; throw Error(usage) for a bad one), else default-constructed.
template <class Op, std::size_t N, template <class> class Accept = AnyElementType>
std::unique_ptr<BoundKernel> bind_map(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) {
  const DType dtype = inputs[0].dtype();
  return visit_dtype(dtype, [&]<class T>(std::type_identity<T>) -> std::unique_ptr<BoundKernel> {
    if constexpr (Accept<T>::value) {
      if constexpr (std::is_constructible_v<Op, const Params&>) {
        return std::make_unique<MapKernel<T, Op, N>>(inputs, output, Op(params));
      } else {
        return std::make_unique<MapKernel<T, Op, N>>(inputs, output, Op{});
      }
    } else {
      throw Error(Errc::bad_input, "kernel does not accept dtype " + std::string(dtype_name(dtype)));
    }
  });
}

}  // namespace tilepool
