// threads mode: every array in private memory, one process: the baseline.
#include "modes/bench_support.hpp"

namespace tilepool::bench {

void BM_Threads(benchmark::State& state, const Case& c) { run_case(state, c, Mode::threads); }

}  // namespace tilepool::bench
