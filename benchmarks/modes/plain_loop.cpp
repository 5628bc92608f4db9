// The memory-bandwidth baseline: c = a + b over 4096x4096 float64 in one thread of this
// process, no pool, no tiles.
#include <Eigen/Core>

#include "modes/bench_support.hpp"
#include "tilepool/shared/allocation.hpp"

namespace tilepool::bench {

void BM_PlainLoop(benchmark::State& state) {
  constexpr std::int64_t kSide = 4096;
  const AnyArray a = allocate_array(DType::float64, {kSide, kSide}, Sharing::private_to_process);
  const AnyArray b = allocate_array(DType::float64, {kSide, kSide}, Sharing::private_to_process);
  const AnyArray c = allocate_array(DType::float64, {kSide, kSide}, Sharing::private_to_process);
  using Vector = Eigen::Map<Eigen::ArrayXd>;
  Vector va(reinterpret_cast<double*>(a.data()), kSide * kSide);
  Vector vb(reinterpret_cast<double*>(b.data()), kSide * kSide);
  Vector vc(reinterpret_cast<double*>(c.data()), kSide * kSide);
  va.setConstant(1.5);
  vb.setConstant(2.5);
  vc.setZero();  // every page exists before timing, as the pools' warm-up run ensures
  for (auto _ : state) {
    vc = va + vb;
    benchmark::DoNotOptimize(vc.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(3 * a.bytes()) * state.iterations());
  state.counters["array_bytes"] = static_cast<double>(a.bytes());
}

}  // namespace tilepool::bench
