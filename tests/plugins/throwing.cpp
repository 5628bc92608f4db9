// A plugin whose kernel throws, from the hook its parameters choose, something that is or is
// not a std::exception: `--param hook=tile|bind|output_spec|input_region|iteration_shape` and
// `--param kind=text|int|std|other|long` (`throw "text"`, `throw 42`, a std::runtime_error, a
// type of its own, a runtime_error of 100 kB); or ends its process from there: `kind=exit`
// (exit(3)) or `kind=terminate` (std::terminate()); `hook=destructor` throws from the bound
// kernel's destructor (which is noexcept: std::terminate). tests/runner/plugin_test.cpp runs it
// in every mode and checks for one error line.
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
  if (kind == "exit") std::exit(3);
  if (kind == "terminate") std::terminate();
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
               {.name = "kind", .type = ParamType::text, .default_value = "text", .meaning = "what: text, int, std, other, long; or end the process: exit, terminate"}},
    .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec>, const Params& params) {
      if (wanted(params, "input_region")) throw_as(params);
      return tile;
    },
    .output_spec = [](std::span<const ArraySpec> inputs, const Params& params) {
      if (wanted(params, "output_spec")) throw_as(params);
      return same_as_inputs(inputs, params);
    },
    .iteration_shape = output_shape,
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) -> std::unique_ptr<BoundKernel> {
      if (wanted(params, "bind")) throw_as(params);
      return std::make_unique<Copy>(inputs, output, params);
    },
};

}  // namespace

TILEPOOL_PLUGIN(kThrows)
