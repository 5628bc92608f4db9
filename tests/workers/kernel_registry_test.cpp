// The kernel registry: what each built-in kernel declares (arity, dtypes, halo, reduction,
// output spec), and the errors check_inputs, find_kernel and Params give for jobs that do not
// fit: the right Errc, and a message naming the kernel and what was expected.
#include <gtest/gtest.h>

#include "support/test_support.hpp"

#include <string>
#include <vector>

#include "shared/error_expectations.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

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
  EXPECT_EQ(input_region(find_kernel("add"), 1, tile, std::vector<ArraySpec>{square, square}), tile);
  EXPECT_EQ(input_region(find_kernel("sum"), 0, tile, one), tile);
  EXPECT_EQ(input_region(find_kernel("blur3x3"), 0, tile, one), make_box({{1, 6}, {7, 13}}));
  EXPECT_EQ(input_region(find_kernel("blur3x3"), 0, make_box({{0, 5}, {25, 30}}), one), make_box({{0, 6}, {24, 30}}));
  // matmul: A's row block (every column) and B's column block (every row).
  const std::vector<ArraySpec> ab{ArraySpec{DType::float64, {20, 7}}, ArraySpec{DType::float64, {7, 30}}};
  EXPECT_EQ(input_region(find_kernel("matmul"), 0, tile, ab), make_box({{2, 5}, {0, 7}}));
  EXPECT_EQ(input_region(find_kernel("matmul"), 1, tile, ab), make_box({{0, 7}, {8, 12}}));
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

}  // namespace
}  // namespace tilepool
