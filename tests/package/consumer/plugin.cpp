// A kernel plugin built out of tree with tilepool_add_kernel_plugin: `consumer_triple`,
// out = 3 * a over float64. The consumer loads it with load_plugin and runs it in share mode on
// the installed tilepool-worker; install_test.sh checks that its entry point is all it exports.
#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct TripleOp {
  template <class Out, class A> void apply(Out out, const A& a) const { out = a * 3.0; }
};

// Only 2-D inputs: the consumer checks that this plugin's Error reaches it as a tilepool::Error.
tilepool::ArraySpec two_d(std::span<const tilepool::ArraySpec> inputs, const tilepool::Params& params) {
  if (inputs[0].shape.size() != 2) throw tilepool::Error(tilepool::Errc::bad_input, "consumer_triple: expected a 2-D input");
  return tilepool::same_as_inputs(inputs, params);
}

const tilepool::KernelDef kTriple{
    .name = "consumer_triple", .summary = "3 * a (float64)", .arity = 1, .dtypes = {tilepool::DType::float64},
    .output_spec = two_d, .iteration_shape = tilepool::output_shape,
    .bind = tilepool::bind_map<TripleOp, 1, std::is_floating_point>};

}  // namespace

TILEPOOL_PLUGIN(kTriple)
