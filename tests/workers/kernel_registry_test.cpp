// The kernel registry: what each built-in kernel declares (arity, dtypes, halo, reduction,
// output spec), and the errors check_inputs, find_kernel and Params give for jobs that do not
// fit: the right Errc, and a message naming the kernel and what was expected.
#include <gtest/gtest.h>

#include "support/test_support.hpp"

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "shared/error_expectations.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"
#include "tilepool/workers/kernel_api.hpp"

namespace tilepool {
namespace {

using testing::make_box;

using testing::throws_error;

const std::vector<DType> kEveryDType{DType::bool_,  DType::int8,   DType::int16,   DType::int32,
                                     DType::int64,  DType::uint8,  DType::uint16,  DType::uint32,
                                     DType::uint64, DType::float32, DType::float64};
const std::vector<DType> kNumericDTypes{DType::int8,   DType::int16,  DType::int32,  DType::int64,   DType::uint8,
                                        DType::uint16, DType::uint32, DType::uint64, DType::float32, DType::float64};
const std::vector<DType> kIntegerDTypes{DType::int8,  DType::int16,  DType::int32,  DType::int64,
                                        DType::uint8, DType::uint16, DType::uint32, DType::uint64};

class KernelRegistryTest : public ::testing::Test {
 protected:
  /// check_inputs for `kernel` over arrays of these dtypes and shapes.
  static ArraySpec check(std::string_view kernel, const std::vector<ArraySpec>& inputs, const Params& params = {}) {
    return check_inputs(find_kernel(kernel), inputs, params);
  }
  static Params value(const std::string& text) {
    Params p;
    p.set("value", text);
    return p;
  }
};

TEST_F(KernelRegistryTest, BuiltinKernelsAreListedInTheDocumentedOrder) {
  std::vector<std::string> names;

  for (const KernelDef* k : builtin_kernels()) names.emplace_back(k->name);

  EXPECT_EQ(names, (std::vector<std::string>{"add", "negate", "square", "add_scalar", "blur3x3", "matmul", "sum"}));
}

TEST_F(KernelRegistryTest, FindKernelReturnsTheKernelOfThatName) {
  for (const KernelDef* k : builtin_kernels()) {
    EXPECT_EQ(&find_kernel(k->name), k) << k->name;
  }
}

TEST_F(KernelRegistryTest, EachKernelDeclaresItsArity) {
  EXPECT_EQ(find_kernel("add").arity, 2);
  EXPECT_EQ(find_kernel("negate").arity, 1);
  EXPECT_EQ(find_kernel("square").arity, 1);
  EXPECT_EQ(find_kernel("add_scalar").arity, 1);
  EXPECT_EQ(find_kernel("blur3x3").arity, 1);
  EXPECT_EQ(find_kernel("matmul").arity, 2);
  EXPECT_EQ(find_kernel("sum").arity, 1);
}

TEST_F(KernelRegistryTest, EachKernelDeclaresTheDtypesItAccepts) {
  EXPECT_EQ(find_kernel("add").dtypes, kEveryDType);
  EXPECT_EQ(find_kernel("negate").dtypes, kNumericDTypes);
  EXPECT_EQ(find_kernel("square").dtypes, kNumericDTypes);
  EXPECT_EQ(find_kernel("add_scalar").dtypes, kNumericDTypes);
  EXPECT_EQ(find_kernel("blur3x3").dtypes, kNumericDTypes);
  EXPECT_EQ(find_kernel("matmul").dtypes, (std::vector<DType>{DType::float32, DType::float64}));
  EXPECT_EQ(find_kernel("sum").dtypes, kEveryDType);
}

TEST_F(KernelRegistryTest, OnlySumIsAReduction) {
  for (const KernelDef* k : builtin_kernels()) {
    SCOPED_TRACE(std::string(k->name));
    EXPECT_EQ(k->reduction, k->name == "sum" ? Reduction::sum : Reduction::none);
  }
}

TEST_F(KernelRegistryTest, InputRegionsAreTheTileItsHaloOrItsRowAndColumnBlocks) {
  const Box tile = make_box({{2, 5}, {8, 12}});
  const ArraySpec square{DType::float64, {20, 30}};
  const std::vector<ArraySpec> one{square};
  // Element-wise kernels read their own tile; blur3x3 its tile grown by one, clamped.
  EXPECT_EQ(input_region(find_kernel("add"), 1, tile, std::vector<ArraySpec>{square, square}, Params{}), tile);
  EXPECT_EQ(input_region(find_kernel("sum"), 0, tile, one, Params{}), tile);
  EXPECT_EQ(input_region(find_kernel("blur3x3"), 0, tile, one, Params{}), make_box({{1, 6}, {7, 13}}));
  EXPECT_EQ(input_region(find_kernel("blur3x3"), 0, make_box({{0, 5}, {25, 30}}), one, Params{}), make_box({{0, 6}, {24, 30}}));
  // matmul: A's row block (every column) and B's column block (every row).
  const std::vector<ArraySpec> ab{ArraySpec{DType::float64, {20, 7}}, ArraySpec{DType::float64, {7, 30}}};
  EXPECT_EQ(input_region(find_kernel("matmul"), 0, tile, ab, Params{}), make_box({{2, 5}, {0, 7}}));
  EXPECT_EQ(input_region(find_kernel("matmul"), 1, tile, ab, Params{}), make_box({{0, 7}, {8, 12}}));
}

TEST_F(KernelRegistryTest, ElementwiseOutputHasTheInputsDtypeAndShape) {
  for (const DType dt : kNumericDTypes) {
    SCOPED_TRACE(std::string(dtype_name(dt)));
    const ArraySpec in{dt, {3, 4, 5}};
    for (const ArraySpec& out : {check("add", {in, in}), check("negate", {in}), check("square", {in}),
                                check("add_scalar", {in}, value("1"))}) {
      EXPECT_EQ(out.dtype, dt);
      EXPECT_EQ(out.shape, in.shape);
    }
  }
  EXPECT_EQ(check("add", {{DType::bool_, {7}}, {DType::bool_, {7}}}).dtype, DType::bool_);
}

TEST_F(KernelRegistryTest, BlurOutputIsFloat32ForFloat32AndFloat64ForEverythingElse) {
  for (const DType dt : kNumericDTypes) {
    SCOPED_TRACE(std::string(dtype_name(dt)));

    const ArraySpec out = check("blur3x3", {{dt, {2, 6, 7}}});

    EXPECT_EQ(out.dtype, dt == DType::float32 ? DType::float32 : DType::float64);
    EXPECT_EQ(out.shape, (Shape{2, 6, 7}));
  }
}

TEST_F(KernelRegistryTest, MatmulOutputIsMByNOfTheInputsDtype) {
  for (const DType dt : {DType::float32, DType::float64}) {
    const ArraySpec out = check("matmul", {{dt, {5, 3}}, {dt, {3, 8}}});

    EXPECT_EQ(out.dtype, dt);
    EXPECT_EQ(out.shape, (Shape{5, 8}));
  }
}

TEST_F(KernelRegistryTest, SumOutputIsAScalarOfFloat64ForFloatsAndInt64ForIntegersAndBool) {
  for (const DType dt : kEveryDType) {
    SCOPED_TRACE(std::string(dtype_name(dt)));

    const ArraySpec out = check("sum", {{dt, {4, 5}}});

    EXPECT_EQ(out.dtype, dtype_is_float(dt) ? DType::float64 : DType::int64);
    EXPECT_EQ(out.shape, Shape{});
  }
}

TEST_F(KernelRegistryTest, WrongNumberOfInputsIsAUsageErrorSayingHowManyTheKernelTakes) {
  const ArraySpec m{DType::float64, {4, 4}};
  EXPECT_TRUE(throws_error([&] { check("add", {m}); }, Errc::usage, {"add", "takes 2 inputs", "got 1"}));
  EXPECT_TRUE(throws_error([&] { check("add", {m, m, m}); }, Errc::usage, {"add", "takes 2 inputs", "got 3"}));
  EXPECT_TRUE(throws_error([&] { check("negate", {m, m}); }, Errc::usage, {"negate", "takes 1 input", "got 2"}));
  EXPECT_TRUE(throws_error([&] { check("matmul", {m}); }, Errc::usage, {"matmul", "takes 2 inputs", "got 1"}));
  EXPECT_TRUE(throws_error([&] { check("sum", {}); }, Errc::usage, {"sum", "takes 1 input", "got 0"}));
}

TEST_F(KernelRegistryTest, InputsOfDifferentShapesAreBadInputNamingTheKernelAndBothShapes) {
  EXPECT_TRUE(throws_error([] { check("add", {{DType::int32, {3, 4}}, {DType::int32, {4, 3}}}); }, Errc::bad_input,
                           {"add", "(4, 3)", "(3, 4)", "expected the same shape"}));
  EXPECT_TRUE(throws_error([] { check("add", {{DType::int32, {12}}, {DType::int32, {3, 4}}}); }, Errc::bad_input,
                           {"add", "(12,)", "(3, 4)", "expected the same shape"}));
}

TEST_F(KernelRegistryTest, InputsOfDifferentDtypesAreBadInputNamingTheKernelAndBothDtypes) {
  EXPECT_TRUE(throws_error([] { check("add", {{DType::float64, {3}}, {DType::int32, {3}}}); }, Errc::bad_input,
                           {"add", "input 2 is int32", "float64", "expected the same dtype"}));
  EXPECT_TRUE(throws_error([] { check("matmul", {{DType::float32, {3, 3}}, {DType::float64, {3, 3}}}); }, Errc::bad_input,
                           {"matmul", "input 2 is float64", "float32", "expected the same dtype"}));
}

TEST_F(KernelRegistryTest, DtypeAKernelDoesNotTakeIsBadInputListingTheOnesItTakes) {
  EXPECT_TRUE(throws_error([] { check("negate", {{DType::bool_, {3}}}); }, Errc::bad_input,
                           {"negate", "input 1 is bool", "expected one of int8, int16"}));
  EXPECT_TRUE(throws_error([] { check("square", {{DType::bool_, {3}}}); }, Errc::bad_input, {"square", "bool", "expected one of"}));
  EXPECT_TRUE(throws_error([] { check("blur3x3", {{DType::bool_, {3, 3}}}); }, Errc::bad_input, {"blur3x3", "bool", "expected one of"}));
  EXPECT_TRUE(throws_error([] { check("add_scalar", {{DType::bool_, {3}}}, value("1")); }, Errc::bad_input,
                           {"add_scalar", "bool", "expected one of"}));
  for (const DType dt : kIntegerDTypes) {
    EXPECT_TRUE(throws_error([&] { check("matmul", {{dt, {2, 2}}, {dt, {2, 2}}}); }, Errc::bad_input,
                             {"matmul", dtype_name(dt), "expected one of float32, float64"}));
  }
}

TEST_F(KernelRegistryTest, BlurOfAOneDimensionalArrayIsBadInputAskingForTwoAxes) {
  EXPECT_TRUE(throws_error([] { check("blur3x3", {{DType::float32, {9}}}); }, Errc::bad_input,
                           {"blur3x3", "(9,)", "expected at least 2 axes"}));
}

TEST_F(KernelRegistryTest, MatmulWhoseInnerDimensionsDifferIsBadInputShowingBothShapes) {
  EXPECT_TRUE(throws_error([] { check("matmul", {{DType::float64, {3, 4}}, {DType::float64, {5, 6}}}); }, Errc::bad_input,
                           {"matmul", "inner dimensions differ", "(3, 4) x (5, 6)", "expected"}));
}

TEST_F(KernelRegistryTest, MatmulOfArraysThatAreNotMatricesIsBadInput) {
  EXPECT_TRUE(throws_error([] { check("matmul", {{DType::float64, {2, 3, 4}}, {DType::float64, {4, 5}}}); }, Errc::bad_input,
                           {"matmul", "(2, 3, 4)", "expected two 2-D arrays"}));
  EXPECT_TRUE(throws_error([] { check("matmul", {{DType::float64, {4}}, {DType::float64, {4}}}); }, Errc::bad_input,
                           {"matmul", "(4,)", "expected two 2-D arrays"}));
}

TEST_F(KernelRegistryTest, AddScalarWithoutValueIsAUsageErrorNamingTheParam) {
  EXPECT_TRUE(throws_error([] { check("add_scalar", {{DType::float64, {3}}}); }, Errc::usage,
                           {"add_scalar", "parameter value="}));
}

TEST_F(KernelRegistryTest, AddScalarWithAValueThatIsNotAFiniteNumberIsAUsageError) {
  for (const std::string text : {"abc", "5x", "inf", "-inf", "nan", "0x10", " 5"}) {
    EXPECT_TRUE(throws_error([&] { check("add_scalar", {{DType::float64, {3}}}, value(text)); }, Errc::usage,
                             {"add_scalar", "value=" + text, "not a finite number"}))
        << "value=" << text;
  }
}

TEST_F(KernelRegistryTest, AddScalarWithAValueTheDtypeCannotHoldIsAUsageError) {
  struct Case {
    DType dtype;
    const char* value;
  };
  for (const Case c : {Case{DType::int8, "2.5"}, Case{DType::int8, "300"}, Case{DType::int8, "128"},
                       Case{DType::int8, "-129"}, Case{DType::uint8, "-1"}, Case{DType::uint8, "256"},
                       Case{DType::uint16, "70000"}, Case{DType::int32, "2147483648"}, Case{DType::uint32, "0.5"},
                       Case{DType::int64, "9223372036854775808"}, Case{DType::int64, "-9223372036854777856"},
                       Case{DType::uint64, "18446744073709551616"}, Case{DType::uint64, "-1"},
                       Case{DType::float32, "1e300"}, Case{DType::float32, "-3.5e38"}}) {
    EXPECT_TRUE(throws_error([&] { check("add_scalar", {{c.dtype, {3}}}, value(c.value)); }, Errc::usage,
                             {"add_scalar", c.value, dtype_name(c.dtype)}))
        << dtype_name(c.dtype) << " value=" << c.value;
  }
}

TEST_F(KernelRegistryTest, AddScalarWithAValueTheDtypeHoldsIsAccepted) {
  struct Case {
    DType dtype;
    const char* value;
  };
  for (const Case c : {Case{DType::int8, "127"}, Case{DType::int8, "-128"}, Case{DType::int8, "-5"},
                       Case{DType::uint8, "255"}, Case{DType::uint8, "0"}, Case{DType::int16, "1e3"},
                       Case{DType::int32, "-2147483648"}, Case{DType::int64, "-9223372036854775808"},
                       Case{DType::uint64, "18446744073709549568"}, Case{DType::float32, "2.5"},
                       Case{DType::float64, "-1e300"}, Case{DType::float64, "0.1"}}) {
    SCOPED_TRACE(std::string(dtype_name(c.dtype)) + " value=" + c.value);

    const ArraySpec out = check("add_scalar", {{c.dtype, {3}}}, value(c.value));

    EXPECT_EQ(out.dtype, c.dtype);
  }
}

TEST_F(KernelRegistryTest, UnknownKernelIsAUsageErrorListingTheKnownOnes) {
  EXPECT_TRUE(throws_error([] { (void)find_kernel("blur"); }, Errc::usage,
                           {"unknown kernel 'blur'", "expected one of", "add, negate, square, add_scalar, blur3x3, matmul, sum"}));
  EXPECT_TRUE(throws_error([] { (void)find_kernel(""); }, Errc::usage, {"unknown kernel ''"}));
}

TEST_F(KernelRegistryTest, ParamThatIsNotKeyEqualsValueIsAUsageError) {
  for (const std::string item : {"value", "=5", "value=", "bad key=5"}) {
    const std::vector<std::string> items{item};
    EXPECT_TRUE(throws_error([&] { (void)Params::parse(items); }, Errc::usage, {"parameter '" + item + "'", "KEY=VALUE"}))
        << item;
  }
}

TEST_F(KernelRegistryTest, ParamsSurviveTheControlBlocksTextForm) {
  const std::vector<std::string> items{"value=-2.5", "other=x"};
  const Params parsed = Params::parse(items);

  const Params restored = Params::from_text(parsed.to_text());

  EXPECT_EQ(restored.values(), parsed.values());
  EXPECT_EQ(restored.number("value", "add_scalar"), -2.5);
}

// --- declared parameters (issue 17, item 11) ----------------------------------------------------

TEST_F(KernelRegistryTest, EveryBuiltinDeclaresItsParametersAndAddScalarDeclaresValue) {
  const KernelDef& k = find_kernel("add_scalar");
  ASSERT_EQ(k.params.size(), 1u);
  EXPECT_EQ(k.params[0].name, "value");
  EXPECT_EQ(k.params[0].type, ParamType::number);
  EXPECT_TRUE(k.params[0].default_value.empty()) << "value is required";
  EXPECT_FALSE(k.params[0].meaning.empty());
  for (const char* none : {"add", "negate", "square", "blur3x3", "matmul", "sum"}) EXPECT_TRUE(find_kernel(none).params.empty()) << none;
}

TEST_F(KernelRegistryTest, UnknownParameterIsAUsageErrorNamingTheAcceptedKeys) {
  Params p = value("1");
  p.set("valeu", "2");
  EXPECT_TRUE(throws_error([&] { check("add_scalar", {{DType::float64, {3}}}, p); }, Errc::usage,
                           {"add_scalar: unknown parameter 'valeu'", "add_scalar accepts: value (number, required)"}));
  EXPECT_TRUE(throws_error([&] { check("negate", {{DType::float64, {3}}}, value("1")); }, Errc::usage,
                           {"negate: unknown parameter 'value'", "negate takes no parameters"}));
}

TEST_F(KernelRegistryTest, RepeatedParameterIsAUsageError) {
  const std::vector<std::string> items{"value=1", "value=2"};
  EXPECT_TRUE(throws_error([&] { (void)Params::parse(items); }, Errc::usage, {"parameter 'value' is given twice (value=1 and value=2)"}));
  Params p = value("1");
  EXPECT_TRUE(throws_error([&] { p.add("value", "3"); }, Errc::usage, {"given twice"}));
}

const KernelDef kWithDefaults{
    .name = "test_with_defaults",
    .summary = "a test kernel with typed, defaulted parameters",
    .arity = 1,
    .dtypes = {DType::float64},
    .params = {{.name = "radius", .type = ParamType::integer, .default_value = "3", .meaning = "the halo"},
               {.name = "label", .type = ParamType::text, .default_value = "x", .meaning = "a name"},
               {.name = "gain", .type = ParamType::number, .meaning = "a factor"}},
    // A region with one axis fewer than the input: named as such.
    .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec>, const Params& params) {
      Box r = tile;
      r.ndim = static_cast<int>(params.number("radius", "test_with_defaults")) == 0 ? tile.ndim - 1 : tile.ndim;
      return r;
    },
    .output_spec = same_as_inputs,
    .iteration_shape = output_shape,
    .bind = [](std::span<const AnyArray>, const AnyArray&, const Params&) -> std::unique_ptr<BoundKernel> { return nullptr; },
};

TEST_F(KernelRegistryTest, CheckParamsFillsInDefaultsAndRefusesIllTypedValuesAndMissingRequiredOnes) {
  Params given;
  given.set("gain", "2.5");
  const Params checked = check_params(kWithDefaults, given);
  EXPECT_EQ(checked.values(), (std::map<std::string, std::string>{{"gain", "2.5"}, {"label", "x"}, {"radius", "3"}}));
  Params bad = given;
  bad.set("radius", "1.5");
  EXPECT_TRUE(throws_error([&] { (void)check_params(kWithDefaults, bad); }, Errc::usage,
                           {"test_with_defaults: parameter radius=1.5 is not an integer", "the halo"}));
  EXPECT_TRUE(throws_error([&] { (void)check_params(kWithDefaults, Params{}); }, Errc::usage,
                           {"test_with_defaults needs the parameter gain=NUMBER", "a factor"}));
}

// Past int64 an integer was "not an integer", and 1e-400 "not a finite number": neither says
// what is wrong. A number below the smallest double reads as Python's float() reads it.
TEST_F(KernelRegistryTest, ParameterValuesOutOfRangeSaySoAndNumbersThatUnderflowReadAsTheNearestDouble) {
  Params big;
  big.set("gain", "1");
  big.set("radius", "9223372036854775808");
  EXPECT_TRUE(throws_error([&] { (void)check_params(kWithDefaults, big); }, Errc::usage,
                           {"radius=9223372036854775808 is out of range", "9223372036854775807"}));
  Params huge;
  huge.set("gain", "1e400");
  EXPECT_TRUE(throws_error([&] { (void)check_params(kWithDefaults, huge); }, Errc::usage,
                           {"gain=1e400 is out of range", "1.8e308"}));
  Params tiny;
  tiny.set("gain", "1e-400");
  EXPECT_EQ(check_params(kWithDefaults, tiny).number("gain", "k"), 0.0);
  tiny.set("gain", "-4e-320");
  EXPECT_EQ(check_params(kWithDefaults, tiny).number("gain", "k"), -4e-320);  // subnormal
  EXPECT_EQ(parse_number("inf"), std::nullopt);
  EXPECT_EQ(param_value_problem("inf", ParamType::number), "is not a finite number");
}

TEST_F(KernelRegistryTest, InputRegionWithTheWrongNumberOfAxesIsNamedAsSuch) {
  const std::vector<ArraySpec> one{{DType::float64, {10, 12}}};
  Params p;
  p.set("gain", "1");
  p.set("radius", "0");
  EXPECT_TRUE(throws_error([&] { (void)input_region(kWithDefaults, 0, make_box({{0, 4}, {0, 4}}), one, check_params(kWithDefaults, p)); },
                           Errc::bad_input, {"test_with_defaults", "a region with 1 axes", "which has 2 axes"}));
  p.set("radius", "1");
  EXPECT_EQ(input_region(kWithDefaults, 0, make_box({{0, 4}, {0, 4}}), one, check_params(kWithDefaults, p)), make_box({{0, 4}, {0, 4}}));
}

// --- anything a kernel throws (issue 17, item 1) -------------------------------------------------

struct NotAnException {};

TEST_F(KernelRegistryTest, DescribeCurrentExceptionSaysWhatWasThrownWhateverItsType) {
  const auto describe = [](auto thrown) {
    try {
      throw thrown;
    } catch (...) {
      return describe_current_exception();
    }
  };
  EXPECT_EQ(describe("text"), "text");
  EXPECT_EQ(describe(std::string("line\nbreak")), "line\\nbreak") << "one line";
  EXPECT_EQ(describe(42), "threw the int 42");
  EXPECT_EQ(describe(2.5), "threw the double 2.5");
  EXPECT_EQ(describe(std::runtime_error("boom")), "boom");
  EXPECT_NE(describe(NotAnException{}).find("threw an exception of type tilepool::(anonymous namespace)::NotAnException"),
            std::string::npos)
      << describe(NotAnException{});
}

TEST_F(KernelRegistryTest, OutputSpecThatThrowsAnythingIsABadInputErrorNamingTheKernel) {
  KernelDef k = kWithDefaults;
  k.output_spec = [](std::span<const ArraySpec>, const Params&) -> ArraySpec { throw "no such luck"; };
  Params p;
  p.set("gain", "1");
  EXPECT_TRUE(throws_error([&] { (void)check_inputs(k, std::vector<ArraySpec>{{DType::float64, {3}}}, p); }, Errc::bad_input,
                           {"test_with_defaults: output_spec failed: no such luck"}));
}

}  // namespace
}  // namespace tilepool
