// copy mode: every array in the parent's private memory; each tile's bytes cross the workers'
// pipes both ways.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

JobArray copy_array(DType dtype, const Shape& shape, Role /*role*/, ArrayStore& /*store*/) {
  return JobArray{private_array(dtype, shape), ""};
}

void BM_Copy(benchmark::State& state, const Case& c) { run_case(state, c, Mode::copy, copy_array); }

}  // namespace tilepool::bench
