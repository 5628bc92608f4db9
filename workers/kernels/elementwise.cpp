// add, negate, square, add_scalar: element-wise kernels over the tile's planes, written with
// the public kernel-authoring API (bind_map, MapKernel, bind_for_dtype: kernel_api.hpp).
#include <charconv>
#include <cmath>
#include <string>

#include "kernels/builtin.hpp"
#include "kernels/kernel_support.hpp"

namespace tilepool::kernels {
namespace {

struct AddOp {
  template <class O, class A, class B> void apply(O out, const A& a, const B& b) const {
    using T = typename A::Scalar;
    if constexpr (kIsInt<T> || std::is_same_v<T, bool>) out = a.binaryExpr(b, WrapAdd{});
    else out = a + b;
  }
};
struct NegateOp {
  template <class O, class A> void apply(O out, const A& a) const {
    if constexpr (kIsInt<typename A::Scalar>) out = a.unaryExpr(WrapNegate{});
    else out = -a;
  }
};
struct SquareOp {
  template <class O, class A> void apply(O out, const A& a) const {
    if constexpr (kIsInt<typename A::Scalar>) out = a.unaryExpr(WrapSquare{});
    else out = a.cwiseProduct(a);
  }
};
template <class T>
struct AddScalarOp {
  T value;
  template <class O, class A> void apply(O out, const A& a) const {
    if constexpr (kIsInt<T>) out = a.unaryExpr([v = value](T x) { return WrapAdd{}(x, v); });
    else out = a.array() + value;
  }
};

// The scalar converted to T, refusing values T cannot hold exactly (add_scalar on an int8
// array with value=2.5 or value=300 is a usage error, not a silent truncation).
template <class T>
T scalar_param(const Params& params) {
  if constexpr (kIsInt<T>) {
    // An integer written as one is read as one: exact to T's last value (through a double,
    // 9007199254740993 became ...992 and int64's maximum was refused as out of range).
    const std::string& text = params.values().at("value");
    T exact{};
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), exact);
    if (end == text.data() + text.size() && err == std::errc{}) return exact;
  }
  const double v = params.number("value", "add_scalar");
  if constexpr (kIsInt<T>) {
    // Checked before converting: converting a double outside T's range is undefined behaviour.
    // The bounds are exact in double (T's max, 2^63 - 1 for int64, is not: it rounds up).
    const bool in_range = v >= static_cast<double>(std::numeric_limits<T>::min()) &&
                          v < std::ldexp(1.0, std::numeric_limits<T>::digits);
    if (!in_range || v != std::trunc(v)) {
      throw Error(Errc::usage, fmt::format("add_scalar: parameter value={} does not fit {} (expected an integer in its range)",
                                           params.values().at("value"), dtype_name(dtype_of_v<T>)));
    }
  } else if constexpr (std::is_same_v<T, float>) {
    // A double beyond float's range does not convert (undefined behaviour), it is refused.
    if (std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
      throw Error(Errc::usage, fmt::format("add_scalar: parameter value={} is out of float32 range (expected |value| <= 3.4e38)",
                                           params.values().at("value")));
    }
  }
  return static_cast<T>(v);
}

template <class T> struct MakeAddScalar {
  static constexpr bool kAccepted = !std::is_same_v<T, bool>;
  static std::unique_ptr<BoundKernel> make(std::span<const AnyArray> in, const AnyArray& out, const Params& params) {
    return std::make_unique<MapKernel<T, AddScalarOp<T>, 1>>(in, out, AddScalarOp<T>{scalar_param<T>(params)});
  }
};

ArraySpec add_scalar_spec(std::span<const ArraySpec> inputs, const Params& params) {
  // Validates the parameter before any worker starts.
  visit_dtype(inputs[0].dtype, [&]<class T>(std::type_identity<T>) {
    if constexpr (!std::is_same_v<T, bool>) (void)scalar_param<T>(params);
  });
  return same_as_inputs(inputs, params);
}

}  // namespace

const KernelDef kAdd{
    .name = "add", .summary = "a + b, element-wise (the seed workload)", .arity = 2, .dtypes = all_dtypes(),
    .output_spec = same_as_inputs, .iteration_shape = output_shape, .bind = bind_map<AddOp, 2>};
const KernelDef kNegate{
    .name = "negate", .summary = "-a, element-wise", .arity = 1, .dtypes = numeric_dtypes(),
    .output_spec = same_as_inputs, .iteration_shape = output_shape, .bind = bind_map<NegateOp, 1, NumericElementType>};
const KernelDef kSquare{
    .name = "square", .summary = "a * a, element-wise", .arity = 1, .dtypes = numeric_dtypes(),
    .output_spec = same_as_inputs, .iteration_shape = output_shape, .bind = bind_map<SquareOp, 1, NumericElementType>};
const KernelDef kAddScalar{
    .name = "add_scalar", .summary = "a + value", .arity = 1, .dtypes = numeric_dtypes(),
    .params = {{.name = "value", .type = ParamType::number, .meaning = "the number added to each element"}},
    .output_spec = add_scalar_spec, .iteration_shape = output_shape, .bind = bind_for_dtype<MakeAddScalar>};

}  // namespace tilepool::kernels
