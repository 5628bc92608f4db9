// fork mode: inputs in the parent's private memory (workers see them copy-on-write), output in
// an anonymous MAP_SHARED mapping the forked workers write.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

JobArray fork_array(DType dtype, const Shape& shape, Role role, ArrayStore& /*store*/) {
  return JobArray{role == Role::input ? private_array(dtype, shape) : make_shared_array(dtype, shape), ""};
}

void BM_Fork(benchmark::State& state, const Case& c) { run_case(state, c, Mode::fork, fork_array); }

}  // namespace tilepool::bench
