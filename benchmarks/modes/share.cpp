// share mode: inputs and output in named segments; workers attach them once (initializer).
#include "modes/bench_support.hpp"
#include "tilepool/runner/job_names.hpp"

namespace tilepool::bench {

JobArray share_array(DType dtype, const Shape& shape, Role role, ArrayStore& store) {
  // Job-style names (tilepool-<pid>-...): `tilepool gc` removes them if the benchmark is killed.
  store.segments.push_back(ArraySegment::create(job_segment_name(role == Role::input ? "bench-in" : "bench-out"), dtype, shape));
  return JobArray::of(store.segments.back());
}

void BM_Share(benchmark::State& state, const Case& c) { run_case(state, c, Mode::share, share_array); }

}  // namespace tilepool::bench
