// The kernel registry: the list of built-in kernels and the checks every job goes through.
#include <cxxabi.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <system_error>
#include <typeinfo>

#include <fmt/format.h>

#include "tilepool/shared/escape.hpp"

#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool {

std::span<const KernelDef* const> builtin_kernels() noexcept {
  // To add a kernel: define a KernelDef in a new file of this folder (workers/CMakeLists.txt
  // builds every file here), declare it in builtin.hpp and list it here.
  static const std::array<const KernelDef*, 7> kAll = {
      &kernels::kAdd, &kernels::kNegate, &kernels::kSquare, &kernels::kAddScalar,
      &kernels::kBlur3x3, &kernels::kMatmul, &kernels::kSum,
  };
  return kAll;
}

namespace {

struct Registered {
  std::mutex mutex;
  std::vector<const KernelDef*> kernels;
};
Registered& registered() {
  static Registered r;
  return r;
}

}  // namespace

void register_kernel(const KernelDef& kernel) {
  if (kernel.name.empty() || kernel.output_spec == nullptr || kernel.iteration_shape == nullptr || kernel.bind == nullptr) {
    throw Error(Errc::usage, fmt::format("kernel '{}': a kernel needs a name, output_spec, iteration_shape and bind", kernel.name));
  }
  for (const KernelDef* k : known_kernels()) {
    if (k->name == kernel.name) throw Error(Errc::usage, fmt::format("kernel '{}' is already registered", kernel.name));
  }
  Registered& r = registered();
  const std::lock_guard lock(r.mutex);
  r.kernels.push_back(&kernel);
}

std::vector<const KernelDef*> known_kernels() {
  std::vector<const KernelDef*> all(builtin_kernels().begin(), builtin_kernels().end());
  Registered& r = registered();
  const std::lock_guard lock(r.mutex);
  all.insert(all.end(), r.kernels.begin(), r.kernels.end());
  return all;
}

const KernelDef& find_kernel(std::string_view name) {
  std::string known;
  for (const KernelDef* k : known_kernels()) {
    if (k->name == name) return *k;
    known += fmt::format("{}{}", known.empty() ? "" : ", ", k->name);
  }
  throw Error(Errc::usage, fmt::format("unknown kernel '{}' (expected one of: {})", name, known));
}

Errc current_error_code() noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return e.code();
  } catch (...) {
    return Errc::job_failed;
  }
}

int current_error_errno() noexcept {
  try {
    throw;
  } catch (const Error& e) {
    return e.sys_errno();
  } catch (const std::system_error& e) {
    const std::error_category& c = e.code().category();
    return c == std::generic_category() || c == std::system_category() ? e.code().value() : 0;
  } catch (...) {
    return 0;
  }
}

std::string describe_terminating_exception() {
  if (!std::current_exception()) return {};
  try {
    std::rethrow_exception(std::current_exception());
  } catch (...) {
    return ": " + describe_current_exception();
  }
}

std::string describe_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    // tilepool's own errors hold text escaped where it was made (a path, a plugin's message):
    // escaping them again doubled every backslash ("input_region failed: a\\nb").
    return one_line(e.what());
  } catch (const std::exception& e) {
    const char* what = e.what();  // a plugin's what() may return null
    return what != nullptr ? escape_for_message(what) : "threw a std::exception whose what() is null";
  } catch (const char* text) {
    return escape_for_message(text != nullptr ? text : "(null)");
  } catch (const std::string& text) {
    return escape_for_message(text);
  } catch (const std::string_view& text) {
    return escape_for_message(text);
  } catch (int v) {
    return fmt::format("threw the int {}", v);
  } catch (long v) {
    return fmt::format("threw the long {}", v);
  } catch (long long v) {
    return fmt::format("threw the long long {}", v);
  } catch (unsigned v) {
    return fmt::format("threw the unsigned {}", v);
  } catch (unsigned long v) {
    return fmt::format("threw the unsigned long {}", v);
  } catch (double v) {
    return fmt::format("threw the double {}", v);
  } catch (...) {
    // Anything else: its type, demangled.
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (type == nullptr) return "threw an exception of unknown type";
    int status = 0;
    char* name = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    std::string s = fmt::format("threw an exception of type {}", escape_for_message(status == 0 && name != nullptr ? name : type->name()));
    std::free(name);
    return s;
  }
}

std::string_view param_type_name(ParamType type) noexcept {
  switch (type) {
    case ParamType::number: return "number";
    case ParamType::integer: return "integer";
    case ParamType::text: return "text";
  }
  return "?";
}

namespace {


}  // namespace

std::string accepted_params(const KernelDef& kernel) {
  if (kernel.params.empty()) return fmt::format("{} takes no parameters", kernel.name);
  std::string s;
  for (const ParamDef& p : kernel.params) {
    s += fmt::format("{}{} ({}{})", s.empty() ? "" : ", ", p.name, param_type_name(p.type),
                     p.default_value.empty() ? std::string(", required") : fmt::format(", default {}", p.default_value));
  }
  return fmt::format("{} accepts: {}", kernel.name, s);
}

Params check_params(const KernelDef& kernel, const Params& params) {
  for (const auto& [key, value] : params.values()) {
    const auto it = std::find_if(kernel.params.begin(), kernel.params.end(), [&](const ParamDef& p) { return p.name == key; });
    if (it == kernel.params.end()) {
      throw Error(Errc::usage, fmt::format("{}: unknown parameter '{}' ({})", kernel.name, escape_for_message(key), accepted_params(kernel)));
    }
    if (const std::string problem = param_value_problem(value, it->type); !problem.empty()) {
      throw Error(Errc::usage, fmt::format("{}: parameter {}={} {} ({}: {})", kernel.name, key, escape_for_message(value), problem,
                                           key, it->meaning));
    }
  }
  Params filled = params;
  for (const ParamDef& p : kernel.params) {
    if (params.values().contains(std::string(p.name))) continue;
    if (p.default_value.empty()) {
      throw Error(Errc::usage, fmt::format("{} needs the parameter {}={} ({})", kernel.name, p.name,
                                           p.type == ParamType::text ? "TEXT" : p.type == ParamType::integer ? "INTEGER" : "NUMBER", p.meaning));
    }
    filled.set(std::string(p.name), std::string(p.default_value));
  }
  return filled;
}

namespace {

// The hook the calling thread runs (running_kernel_hook), for as long as a HookScope lives.
thread_local const KernelDef* t_hook_kernel = nullptr;
thread_local const char* t_hook_name = nullptr;

class HookScope {
 public:
  HookScope(const KernelDef& kernel, const char* hook) noexcept : kernel_(t_hook_kernel), hook_(t_hook_name) {
    t_hook_kernel = &kernel;
    t_hook_name = hook;
  }
  ~HookScope() {
    t_hook_kernel = kernel_;
    t_hook_name = hook_;
  }
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

 private:
  const KernelDef* kernel_;
  const char* hook_;
};

}  // namespace

bool catching_thread_exit() noexcept { return !std::current_exception(); }

std::string running_kernel_hook() {
  return t_hook_kernel == nullptr ? std::string() : fmt::format("kernel {}'s {}", t_hook_kernel->name, t_hook_name);
}

Shape iteration_shape_of(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output) {
  Shape space;
  try {
    const HookScope scope(kernel, "iteration_shape");
    space = kernel.iteration_shape(inputs, output);
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with(kernel.name)) throw;
    throw Error(e.code(), fmt::format("{}: {}", kernel.name, e.what()));
  } catch (...) {
    if (catching_thread_exit()) {
      end_on_thread_exit(fmt::format("kernel {} called pthread_exit() from iteration_shape (a kernel must return or throw)", kernel.name));
    }
    throw Error(Errc::bad_input, fmt::format("{}: iteration_shape failed: {}", kernel.name, describe_current_exception()));
  }
  // A map's tile writes its own box of the output: a space of another shape would write
  // outside the output (or leave part of it unwritten), in every mode.
  if (kernel.reduction == Reduction::none && space != output.shape) {
    throw Error(Errc::bad_input, fmt::format("{}: tiles a space of shape {} but writes an output of shape {} (a map kernel's "
                                             "iteration_shape must be its output's shape)",
                                             kernel.name, format_shape(space), format_shape(output.shape)));
  }
  return space;
}

Box input_region(const KernelDef& kernel, std::size_t input, const Box& tile, std::span<const ArraySpec> inputs,
                 const Params& params) {
  Box region = tile;
  if (kernel.input_region != nullptr) {
    try {
      const HookScope scope(kernel, "input_region");
      region = kernel.input_region(input, tile, inputs, params);
    } catch (...) {
      if (catching_thread_exit()) {
        end_on_thread_exit(fmt::format("kernel {} called pthread_exit() from input_region (a kernel must return or throw)", kernel.name));
      }
      throw Error(Errc::bad_input, fmt::format("{}: input_region failed for tile {} of input {}: {}", kernel.name, format_box(tile),
                                               input + 1, describe_current_exception()));
    }
  }
  const Shape& shape = inputs[input].shape;
  if (region.ndim != static_cast<int>(shape.size())) {
    throw Error(Errc::bad_input, fmt::format("{}: tile {} reads a region with {} axes, {}, of input {}, which has {} axes (shape {}); "
                                             "input_region must give one range per axis of the input",
                                             kernel.name, format_box(tile), region.ndim, format_box(region), input + 1, shape.size(),
                                             format_shape(shape)));
  }
  bool inside = true;
  for (int a = 0; inside && a < region.ndim; ++a) {
    const auto i = static_cast<std::size_t>(a);
    inside = 0 <= region.lo[i] && region.lo[i] <= region.hi[i] && region.hi[i] <= shape[i];
  }
  if (!inside) {
    throw Error(Errc::bad_input, fmt::format("{}: tile {} reads region {} of input {}, which has shape {}", kernel.name,
                                             format_box(tile), format_box(region), input + 1, format_shape(shape)));
  }
  return region;
}

TilePartial sum_in_tile_order(std::span<const TilePartial> partials) noexcept {
  double f64 = 0;
  std::uint64_t i64 = 0;
  for (const TilePartial& p : partials) {
    f64 += p.f64;
    i64 += static_cast<std::uint64_t>(p.i64);
  }
  return TilePartial{f64, static_cast<std::int64_t>(i64)};
}

void store_total(const TilePartial& total, const AnyArray& output) {
  TILEPOOL_CHECK(output.shape().empty() && (output.dtype() == DType::float64 || output.dtype() == DType::int64));
  if (output.dtype() == DType::float64) {
    std::memcpy(output.data(), &total.f64, sizeof total.f64);
  } else {
    std::memcpy(output.data(), &total.i64, sizeof total.i64);
  }
}

Box grown_on_last_two_axes(const Box& box, std::int64_t by, const Shape& shape) {
  Box r = box;
  for (int a = std::max(0, box.ndim - 2); a < box.ndim; ++a) {
    const auto i = static_cast<std::size_t>(a);
    r.lo[i] = std::max<std::int64_t>(0, r.lo[i] - by);
    r.hi[i] = std::min(shape[i], r.hi[i] + by);
  }
  return r;
}

std::string format_dtypes(std::span<const DType> dtypes) {
  std::string s;
  for (const DType d : dtypes) s += fmt::format("{}{}", s.empty() ? "" : ", ", dtype_name(d));
  return s;
}

namespace {

// What a plugin's output_spec returned is read as a dtype and a shape only if it is one: a
// byte outside the DType enum was taken for an item size ("needs 316659406213248 bytes").
ArraySpec checked_output_spec(const KernelDef& kernel, ArraySpec out) {
  if (static_cast<unsigned>(out.dtype) > static_cast<unsigned>(DType::float64)) {
    throw Error(Errc::bad_input, fmt::format("{}: output_spec returned dtype code {}, which is no dtype (expected DType::bool_ "
                                             "to DType::float64)", kernel.name, static_cast<unsigned>(out.dtype)));
  }
  if (out.shape.size() > static_cast<std::size_t>(kMaxDims)) {
    throw Error(Errc::bad_input, fmt::format("{}: output_spec returned a shape of {} axes (expected at most {})", kernel.name,
                                             out.shape.size(), kMaxDims));
  }
  if (!byte_count(out.shape, dtype_size(out.dtype))) {
    throw Error(Errc::bad_input, fmt::format("{}: output_spec returned shape {}, which no array has (expected extents >= 0 "
                                             "and a size in bytes that fits in int64)",
                                             kernel.name, format_shape(out.shape)));
  }
  return out;
}

}  // namespace

ArraySpec check_inputs(const KernelDef& kernel, std::span<const ArraySpec> inputs, const Params& given) {
  const std::string k(kernel.name);
  const Params params = check_params(kernel, given);
  if (static_cast<int>(inputs.size()) != kernel.arity) {
    throw Error(Errc::usage, fmt::format("{} takes {} input{}, got {}", k, kernel.arity, kernel.arity == 1 ? "" : "s", inputs.size()));
  }
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const DType d = inputs[i].dtype;
    if (std::find(kernel.dtypes.begin(), kernel.dtypes.end(), d) == kernel.dtypes.end()) {
      throw Error(Errc::bad_input, fmt::format("{}: input {} is {}; expected one of {}", k, i + 1, dtype_name(d),
                                               format_dtypes(kernel.dtypes)));
    }
    if (d != inputs[0].dtype) {
      throw Error(Errc::bad_input, fmt::format("{}: input {} is {} but input 1 is {} (expected the same dtype)", k, i + 1,
                                               dtype_name(d), dtype_name(inputs[0].dtype)));
    }
  }
  // Shared output specs (same_as_inputs) do not know which kernel they serve: name it here, so
  // that every message says which kernel refused the inputs.
  try {
    const HookScope scope(kernel, "output_spec");
    return checked_output_spec(kernel, kernel.output_spec(inputs, params));
  } catch (const Error& e) {
    if (std::string_view(e.what()).starts_with(k)) throw;
    throw Error(e.code(), fmt::format("{}: {}", k, e.what()));
  } catch (...) {
    if (catching_thread_exit()) {
      end_on_thread_exit(fmt::format("kernel {} called pthread_exit() from output_spec (a kernel must return or throw)", k));
    }
    // A plugin's own exception type, a thrown string or number: refused like bad inputs.
    throw Error(Errc::bad_input, fmt::format("{}: output_spec failed: {}", k, describe_current_exception()));
  }
}

ArraySpec same_as_inputs(std::span<const ArraySpec> inputs, const Params& /*params*/) {
  for (std::size_t i = 1; i < inputs.size(); ++i) {
    if (inputs[i].shape != inputs[0].shape) {
      throw Error(Errc::bad_input, fmt::format("input {} has shape {} but input 1 has {} (expected the same shape)", i + 1,
                                               format_shape(inputs[i].shape), format_shape(inputs[0].shape)));
    }
  }
  return inputs[0];
}

Shape output_shape(std::span<const ArraySpec> /*inputs*/, const ArraySpec& output) { return output.shape; }

Shape input_shape(std::span<const ArraySpec> inputs, const ArraySpec& /*output*/) { return inputs[0].shape; }

}  // namespace tilepool
