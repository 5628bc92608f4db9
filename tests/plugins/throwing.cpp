// A plugin whose kernel throws, from the hook its parameters choose, something that is or is
// not a std::exception: `--param hook=tile|bind|output_spec|input_region` and
// `--param kind=text|int|std|other|long|escaped` (`throw "text"`, `throw 42`, a std::runtime_error,
// a type of its own, a runtime_error of 100 kB, one with a line break and a backslash); or ends its process from there: `kind=exit`
// (exit(3)), `kind=terminate` (std::terminate()) or `kind=pthread_exit` (ends its thread); `hook=destructor` throws from the bound
// kernel's destructor (which is noexcept: std::terminate). `hook=output_spec` with
// `kind=bad_dtype|bad_shape` returns a spec that is no array. iteration_shape has no
// parameters: it throws for an input of 7 rows. tests/runner/plugin_test.cpp runs it in every
// mode and checks for one error line.
#include <pthread.h>

#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

using namespace tilepool;

struct OwnFailure {
  int code;
};

bool wanted(const Params& params, std::string_view hook) {
  const auto it = params.values().find("hook");
  return it != params.values().end() && it->second == hook;
}

[[noreturn]] void throw_as(const Params& params) {
  const auto it = params.values().find("kind");
  const std::string kind = it == params.values().end() ? "text" : it->second;
  if (kind == "int") throw 42;
  if (kind == "std") throw std::runtime_error("a runtime_error from the plugin");
  if (kind == "other") throw OwnFailure{7};
  if (kind == "long") throw std::runtime_error("a long message: " + std::string(100'000, 'x'));
  if (kind == "escaped") throw std::runtime_error("two\nlines, a back\\slash");
  if (kind == "exit") std::exit(3);
  if (kind == "terminate") std::terminate();
  if (kind == "pthread_exit") ::pthread_exit(nullptr);
  throw "cursed text from the plugin";
}

class Copy final : public BoundKernel {
 public:
  Copy(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params)
      : in_(inputs[0].as<const double>()), out_(output.as<double>()), params_(params) {}
  // Implicitly noexcept: a throw here is std::terminate, in whatever process runs the kernel.
  ~Copy() override {
    if (wanted(params_, "destructor")) throw_as(params_);
  }
  void run_tile(const Box& box, TileResult& /*result*/) override {
    if (wanted(params_, "tile")) throw_as(params_);
    const auto in = in_.tile(box);
    const auto out = out_.tile(box);
    for (std::int64_t p = 0; p < out.plane_count(); ++p) out.plane(p) = in.plane(p);
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
  Params params_;
};

const KernelDef kThrows{
    .name = "tp_throws",
    .summary = "a test kernel: copies, but throws from the hook it is told to",
    .arity = 1,
    .dtypes = {DType::float64},
    .params = {{.name = "hook", .type = ParamType::text, .default_value = "tile",
                .meaning = "where to throw: tile, bind, output_spec, input_region, destructor"},
               {.name = "kind", .type = ParamType::text, .default_value = "text", .meaning = "what: text, int, std, other, long; or end the process: exit, terminate; or (output_spec) return bad_dtype, bad_shape"}},
    .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec>, const Params& params) {
      if (wanted(params, "input_region")) throw_as(params);
      return tile;
    },
    .output_spec = [](std::span<const ArraySpec> inputs, const Params& params) {
      ArraySpec out = same_as_inputs(inputs, params);
      // Not a throw: a spec that is no array (a dtype code past the enum, a negative extent).
      if (wanted(params, "output_spec") && params.values().at("kind") == "bad_dtype") out.dtype = static_cast<DType>(200);
      if (wanted(params, "output_spec") && params.values().at("kind") == "bad_shape") out.shape = {-3, 4};
      if (wanted(params, "output_spec") && out.dtype == inputs[0].dtype && out.shape == inputs[0].shape) throw_as(params);
      return out;
    },
    .iteration_shape = [](std::span<const ArraySpec> inputs, const ArraySpec& output) {
      // This hook sees no Params: it throws for an input of 7 rows (the tests' a7.npy).
      if (inputs[0].shape.size() == 2 && inputs[0].shape[0] == 7) throw "cursed text from iteration_shape";
      return output.shape;
    },
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) -> std::unique_ptr<BoundKernel> {
      if (wanted(params, "bind")) throw_as(params);
      return std::make_unique<Copy>(inputs, output, params);
    },
};

}  // namespace

TILEPOOL_PLUGIN(kThrows)
