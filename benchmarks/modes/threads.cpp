// threads mode: every array in private memory, one process: the baseline.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

JobArray threads_array(DType dtype, const Shape& shape, Role /*role*/, ArrayStore& /*store*/) {
  return JobArray{private_array(dtype, shape), ""};
}

void BM_Threads(benchmark::State& state, const Case& c) { run_case(state, c, Mode::threads, threads_array); }

}  // namespace tilepool::bench
