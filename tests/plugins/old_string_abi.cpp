// A plugin built with the other libstdc++ string ABI (-D_GLIBCXX_USE_CXX11_ABI=0): its
// std::string, and so the parameters tilepool hands it (Params), are laid out differently from
// tilepool's. It must be refused when loaded, naming the string ABI, not run with its
// parameters read as nothing.
#include <type_traits>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct GainOp {
  double gain = 1;
  explicit GainOp(const tilepool::Params& params) {
    const auto it = params.values().find("gain");  // what goes silently wrong across string ABIs
    if (it != params.values().end()) gain = std::stod(it->second);
  }
  template <class Out, class A> void apply(Out out, const A& a) const { out = a * gain; }
};

const tilepool::KernelDef kGain{
    .name = "tp_gain", .summary = "a test kernel: gain * a (float64)", .arity = 1, .dtypes = {tilepool::DType::float64},
    .params = {{.name = "gain", .type = tilepool::ParamType::number, .default_value = "1", .meaning = "the factor"}},
    .output_spec = tilepool::same_as_inputs, .iteration_shape = tilepool::output_shape,
    .bind = tilepool::bind_map<GainOp, 1, std::is_floating_point>};

}  // namespace

TILEPOOL_PLUGIN(kGain)
