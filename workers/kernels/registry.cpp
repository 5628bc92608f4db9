// The kernel registry: the list of built-in kernels and the checks every job goes through.
#include <array>

#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"

namespace tilepool {

std::span<const KernelDef* const> builtin_kernels() noexcept {
  // To add a kernel: define a KernelDef in a new file of this folder, declare it in
  // builtin.hpp, list it here and add the file to workers/CMakeLists.txt.
  static const std::array<const KernelDef*, 7> kAll = {
      &kernels::kAdd, &kernels::kNegate, &kernels::kSquare, &kernels::kAddScalar,
      &kernels::kBlur3x3, &kernels::kMatmul, &kernels::kSum,
  };
  return kAll;
}

const KernelDef& find_kernel(std::string_view name) {
  std::string known;
  for (const KernelDef* k : builtin_kernels()) {
    if (k->name == name) return *k;
    known += (known.empty() ? "" : ", ") + std::string(k->name);
  }
  throw Error(Errc::usage, "unknown kernel '" + std::string(name) + "' (expected one of: " + known + ")");
}

std::string format_dtypes(std::span<const DType> dtypes) {
  std::string s;
  for (const DType d : dtypes) s += (s.empty() ? "" : ", ") + std::string(dtype_name(d));
  return s;
}

ArraySpec check_inputs(const KernelDef& kernel, std::span<const ArraySpec> inputs, const Params& params) {
  const std::string k(kernel.name);
  if (static_cast<int>(inputs.size()) != kernel.arity) {
    throw Error(Errc::usage, k + " takes " + std::to_string(kernel.arity) + " input" + (kernel.arity == 1 ? "" : "s") +
                                 ", got " + std::to_string(inputs.size()));
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const DType d = inputs[i].dtype;
    if (std::find(kernel.dtypes.begin(), kernel.dtypes.end(), d) == kernel.dtypes.end()) {
      throw Error(Errc::bad_input, k + ": input " + std::to_string(i + 1) + " is " + std::string(dtype_name(d)) +
                                       "; expected one of " + format_dtypes(kernel.dtypes));
    }
    if (d != inputs[0].dtype) {
      throw Error(Errc::bad_input, k + ": input " + std::to_string(i + 1) + " is " + std::string(dtype_name(d)) +
                                       " but input 1 is " + std::string(dtype_name(inputs[0].dtype)) +
                                       " (expected the same dtype)");
    }
  }
  // Shared output specs (same_as_inputs) do not know which kernel they serve: name it here, so
  // that every message says which kernel refused the inputs.
  try {
    return kernel.output_spec(inputs, params);
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with(k)) throw;
    throw Error(e.code(), k + ": " + e.what());
  }
}

namespace kernels {

ArraySpec same_as_inputs(std::span<const ArraySpec> inputs, const Params& /*params*/) {
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    if (inputs[i].shape != inputs[0].shape) {
      throw Error(Errc::bad_input, "input " + std::to_string(i + 1) + " has shape " + format_shape(inputs[i].shape) +
                                       " but input 1 has " + format_shape(inputs[0].shape) + " (expected the same shape)");
    }
  }
  return inputs[0];
}

Shape output_shape(std::span<const ArraySpec> /*inputs*/, const ArraySpec& output) { return output.shape; }

}  // namespace kernels
}  // namespace tilepool
