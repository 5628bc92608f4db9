// fork mode: inputs in the parent's private memory (workers see them copy-on-write), output in
// MAP_SHARED memory the forked workers write.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

void BM_Fork(benchmark::State& state, const Case& c) { run_case(state, c, Mode::fork); }

}  // namespace tilepool::bench
