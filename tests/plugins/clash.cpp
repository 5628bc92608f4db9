// A plugin whose kernel is called `add`, like a built-in: refused. Built again as
// tptest_no_inputs (a kernel of arity 0: it could be listed, never run) and tptest_bad_name (a
// name with a line break, which split `tilepool kernels`' table): refused too.
#include <string_view>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct CopyOp {
  template <class Out, class A, class B> void apply(Out out, const A& a, const B&) const { out = a; }
};

#if defined(TPTEST_NO_INPUTS)
constexpr std::string_view kName = "tp_no_inputs";
constexpr int kArity = 0;
#elif defined(TPTEST_BAD_NAME)
constexpr std::string_view kName = "bad name\nwith a line break";
constexpr int kArity = 2;
#else
constexpr std::string_view kName = "add";
constexpr int kArity = 2;
#endif

const tilepool::KernelDef kAdd{.name = kName, .summary = "not the built-in add", .arity = kArity, .dtypes = tilepool::all_dtypes(),
                               .output_spec = tilepool::same_as_inputs, .iteration_shape = tilepool::output_shape,
                               .bind = tilepool::bind_map<CopyOp, 2>};

}  // namespace

TILEPOOL_PLUGIN(kAdd)
