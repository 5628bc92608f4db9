// matmul: C = A * B for A (M x K) and B (K x N), tiled over C; each tile is one Eigen GEMM of
// a row block of A with a column block of B.
#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"

namespace tilepool::kernels {
namespace {

// A tile of C reads a row block of A (the tile's rows, every column) and a column block of B
// (every row, the tile's columns).
Box matmul_region(std::size_t input, const Box& tile, std::span<const ArraySpec> inputs, const Params& /*params*/) {
  Box r = tile;
  const std::int64_t k = inputs[0].shape[1];
  const std::size_t whole = input == 0 ? 1 : 0;
  r.lo[whole] = 0;
  r.hi[whole] = k;
  return r;
}

template <class T>
class Matmul final : public BoundKernel {
 public:
  Matmul(std::span<const AnyArray> inputs, const AnyArray& output)
      : a_(inputs[0].as<const T>()), b_(inputs[1].as<const T>()), c_(output.as<T>()) {}

  void run_tile(const Box& box, TileResult& /*result*/) override {
    const std::array<ArraySpec, 2> specs = {ArraySpec{a_dtype, a_.shape()}, ArraySpec{a_dtype, b_.shape()}};
    const auto a = a_.tile(matmul_region(0, box, specs, Params{}));
    const auto b = b_.tile(matmul_region(1, box, specs, Params{}));
    auto c = c_.tile(box).plane(0);
    c.noalias() = a.plane(0) * b.plane(0);
  }

 private:
  static constexpr DType a_dtype = dtype_of_v<T>;
  ArrayView<const T> a_, b_;
  ArrayView<T> c_;
};

template <class T> struct MakeMatmul {
  static constexpr bool kAccepted = std::is_floating_point_v<T>;
  static std::unique_ptr<BoundKernel> make(std::span<const AnyArray> in, const AnyArray& out, const Params&) {
    return std::make_unique<Matmul<T>>(in, out);
  }
};

ArraySpec matmul_spec(std::span<const ArraySpec> inputs, const Params& /*params*/) {
  const Shape& a = inputs[0].shape;
  const Shape& b = inputs[1].shape;
  if (a.size() != 2 || b.size() != 2) {
    throw Error(Errc::bad_input, fmt::format("matmul: inputs have shapes {} and {}; expected two 2-D arrays (M x K and K x N)",
                                             format_shape(a), format_shape(b)));
  }
  if (a[1] != b[0]) {
    throw Error(Errc::bad_input, fmt::format("matmul: inner dimensions differ: {} x {} (expected A's columns == B's rows)",
                                             format_shape(a), format_shape(b)));
  }
  return ArraySpec{inputs[0].dtype, Shape{a[0], b[1]}};
}

}  // namespace

const KernelDef kMatmul{
    .name = "matmul", .summary = "A (M x K) times B (K x N), tiled over the output, Eigen GEMM", .arity = 2,
    .dtypes = {DType::float32, DType::float64},
    .input_region = matmul_region, .output_spec = matmul_spec, .iteration_shape = output_shape,
    .bind = bind_for_dtype<MakeMatmul>};

}  // namespace tilepool::kernels
