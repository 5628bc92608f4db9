#include "modes/bench_support.hpp"

#include "tilepool/workers/kernel_api.hpp"

namespace tilepool::bench {
namespace {

// Runs no code on a tile: a job of it costs exactly what dispatching its tiles costs (claim,
// tile box, kernel call, completion), with no memory traffic.
class NoopBound final : public BoundKernel {
 public:
  void run_tile(const Box& /*box*/, TileResult& /*result*/) override {}
};

std::unique_ptr<BoundKernel> bind_noop(std::span<const AnyArray> /*inputs*/, const AnyArray& /*output*/,
                                       const Params& /*params*/) {
  return std::make_unique<NoopBound>();
}

const KernelDef kNoop{.name = "noop",
                      .summary = "nothing (benchmarks: the cost of dispatch alone)",
                      .arity = 1,
                      .dtypes = all_dtypes(),
                      .output_spec = same_as_inputs,
                      .iteration_shape = output_shape,
                      .bind = bind_noop};

}  // namespace

void register_noop_kernel() { register_kernel(kNoop); }

}  // namespace tilepool::bench
