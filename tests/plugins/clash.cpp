// A plugin whose kernel is called `add`, like a built-in: refused.
#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct CopyOp {
  template <class Out, class A, class B> void apply(Out out, const A& a, const B&) const { out = a; }
};

const tilepool::KernelDef kAdd{.name = "add", .summary = "not the built-in add", .arity = 2, .dtypes = tilepool::all_dtypes(),
                               .output_spec = tilepool::same_as_inputs, .iteration_shape = tilepool::output_shape,
                               .bind = tilepool::bind_map<CopyOp, 2>};

}  // namespace

TILEPOOL_PLUGIN(kAdd)
