// share mode: inputs and output in job-owned segments; workers attach them once (initializer).
#include "modes/bench_support.hpp"

namespace tilepool::bench {

void BM_Share(benchmark::State& state, const Case& c) { run_case(state, c, Mode::share); }

}  // namespace tilepool::bench
