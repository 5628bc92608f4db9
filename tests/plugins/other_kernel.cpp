// A second plugin for the plugin tests: several --plugin at once, and a warm pool that gets a
// job of a plugin it has not loaded yet. Built again with TPTEST_TWICE_V2 (tptest_other_v2) as
// "a rebuilt plugin" whose tp_twice gives 3 * a: the plugin replaced mid-job. Built with
// TPTEST_ABORT_AT_EXIT (tptest_abort_at_exit), a static destructor of it aborts: when the
// process that loaded it exits, after the job's result was published.
#include <cstdlib>
#include <type_traits>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

#ifdef TPTEST_ABORT_AT_EXIT
struct AbortsAtExit {
  AbortsAtExit() = default;
  AbortsAtExit(const AbortsAtExit&) = delete;
  AbortsAtExit& operator=(const AbortsAtExit&) = delete;
  ~AbortsAtExit() { std::abort(); }
};
const AbortsAtExit kAbortsAtExit;
#endif

struct TwiceOp {
#ifdef TPTEST_TWICE_V2
  template <class Out, class A> void apply(Out out, const A& a) const { out = a + a + a; }
#else
  template <class Out, class A> void apply(Out out, const A& a) const { out = a + a; }
#endif
};

const tilepool::KernelDef kTwice{
    .name = "tp_twice", .summary = "a test kernel: a + a (float64)", .arity = 1, .dtypes = {tilepool::DType::float64},
    .output_spec = tilepool::same_as_inputs, .iteration_shape = tilepool::output_shape,
    .bind = tilepool::bind_map<TwiceOp, 1, std::is_floating_point>};

}  // namespace

TILEPOOL_PLUGIN(kTwice)
