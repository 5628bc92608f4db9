// copy mode: every array in the parent's private memory; each tile's bytes cross the workers'
// pipes both ways.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

void BM_Copy(benchmark::State& state, const Case& c) { run_case(state, c, Mode::copy); }

}  // namespace tilepool::bench
