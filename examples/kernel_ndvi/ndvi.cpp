// ndvi: the normalized difference of two bands, (a - b) / (a + b), and 0 where a + b == 0:
// the NDVI that image users compute over tiles (a = near infrared, b = red). An element-wise
// kernel: a functor over Eigen tile planes, dispatched over float32 and float64.
#include <type_traits>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct NdviOp {
  // out, a, b: one plane of the tile (Eigen row-major maps); a and b read-only.
  template <class Out, class A, class B>
  void apply(Out out, const A& a, const B& b) const {
    using T = typename A::Scalar;
    const auto sum = a.array() + b.array();
    out = (sum == T(0)).select(T(0), (a.array() - b.array()) / sum).matrix();
  }
};

const tilepool::KernelDef kNdvi{
    .name = "ndvi",
    .summary = "(a - b) / (a + b), 0 where a + b == 0 (float32, float64)",
    .arity = 2,
    .dtypes = tilepool::float_dtypes(),
    .output_spec = tilepool::same_as_inputs,   // a and b the same shape; out like them
    .iteration_shape = tilepool::output_shape,  // tiles of the output
    .bind = tilepool::bind_map<NdviOp, 2, std::is_floating_point>,
};

}  // namespace

TILEPOOL_PLUGIN(kNdvi)
