#include "tilepool/shared/dtype.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string_view>

namespace tilepool {
namespace {

struct DTypeFacts {
  DType dtype;
  std::string_view name;
  std::string_view typestr;
  std::size_t size;
  bool is_integer;
  bool is_float;
  bool is_signed;
};

// What numpy says about each supported dtype (np.dtype(name).str, .itemsize, .kind).
constexpr std::array<DTypeFacts, kDTypeCount> kNumpyFacts = {{
    {DType::bool_, "bool", "|b1", 1, false, false, false},
    {DType::int8, "int8", "|i1", 1, true, false, true},
    {DType::int16, "int16", "<i2", 2, true, false, true},
    {DType::int32, "int32", "<i4", 4, true, false, true},
    {DType::int64, "int64", "<i8", 8, true, false, true},
    {DType::uint8, "uint8", "|u1", 1, true, false, false},
    {DType::uint16, "uint16", "<u2", 2, true, false, false},
    {DType::uint32, "uint32", "<u4", 4, true, false, false},
    {DType::uint64, "uint64", "<u8", 8, true, false, false},
    {DType::float32, "float32", "<f4", 4, false, true, true},
    {DType::float64, "float64", "<f8", 8, false, true, true},
}};

TEST(DTypeTest, EnumValuesAreStableBecauseControlBlocksStoreThem) {
  for (std::size_t i = 0; i < kNumpyFacts.size(); ++i) {
    EXPECT_EQ(static_cast<std::size_t>(kNumpyFacts[i].dtype), i) << kNumpyFacts[i].name;
  }
}

TEST(DTypeTest, NameOfEveryDTypeIsTheNumpyName) {
  for (const auto& f : kNumpyFacts) EXPECT_EQ(dtype_name(f.dtype), f.name);
}

TEST(DTypeTest, TypestrOfEveryDTypeIsTheLittleEndianNumpyTypestr) {
  for (const auto& f : kNumpyFacts) EXPECT_EQ(dtype_typestr(f.dtype), f.typestr) << f.name;
}

TEST(DTypeTest, SizeAndKindPredicatesMatchNumpy) {
  for (const auto& f : kNumpyFacts) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(dtype_size(f.dtype), f.size);
    EXPECT_EQ(dtype_is_integer(f.dtype), f.is_integer);
    EXPECT_EQ(dtype_is_float(f.dtype), f.is_float);
    EXPECT_EQ(dtype_is_signed(f.dtype), f.is_signed);
  }
}

TEST(DTypeTest, DTypeFromNameInvertsDTypeName) {
  for (const auto& f : kNumpyFacts) EXPECT_EQ(dtype_from_name(f.name), f.dtype) << f.name;
}

TEST(DTypeTest, DTypeFromNameRejectsUnknownNames) {
  for (const std::string_view name : {"", "float16", "Float64", "int", "double", "bool_", "float64 ", "complex128"}) {
    EXPECT_EQ(dtype_from_name(name), std::nullopt) << "'" << name << "'";
  }
}

TEST(DTypeTest, ParseTypestrAcceptsEveryTypestrTilepoolWrites) {
  for (const auto& f : kNumpyFacts) {
    const auto parsed = parse_typestr(f.typestr);
    ASSERT_TRUE(parsed.has_value()) << f.typestr;
    EXPECT_EQ(parsed->dtype, f.dtype) << f.typestr;
    EXPECT_FALSE(parsed->big_endian) << f.typestr;
  }
}

TEST(DTypeTest, ParseTypestrMarksMultiByteBigEndianTypestrs) {
  const std::array<std::pair<std::string_view, DType>, 7> cases = {{
      {">i2", DType::int16}, {">i4", DType::int32}, {">i8", DType::int64}, {">u2", DType::uint16},
      {">u4", DType::uint32}, {">f4", DType::float32}, {">f8", DType::float64},
  }};
  for (const auto& [typestr, dtype] : cases) {
    const auto parsed = parse_typestr(typestr);
    ASSERT_TRUE(parsed.has_value()) << typestr;
    EXPECT_EQ(parsed->dtype, dtype) << typestr;
    EXPECT_TRUE(parsed->big_endian) << typestr;
  }
}

TEST(DTypeTest, ParseTypestrTreatsSingleByteBigEndianTypestrsAsNative) {
  for (const auto& [typestr, dtype] : {std::pair{">u1", DType::uint8}, {">i1", DType::int8}, {">b1", DType::bool_}}) {
    const auto parsed = parse_typestr(typestr);
    ASSERT_TRUE(parsed.has_value()) << typestr;
    EXPECT_EQ(parsed->dtype, dtype) << typestr;
    EXPECT_FALSE(parsed->big_endian) << typestr;
  }
}

TEST(DTypeTest, ParseTypestrReadsNativeOrderAndNoOrderFormsAsLittleEndian) {
  const std::array<std::pair<std::string_view, DType>, 8> cases = {{
      {"=f8", DType::float64}, {"f8", DType::float64}, {"=i4", DType::int32}, {"i4", DType::int32},
      {"u2", DType::uint16}, {"b1", DType::bool_}, {"|u1", DType::uint8}, {"<u8", DType::uint64},
  }};
  for (const auto& [typestr, dtype] : cases) {
    const auto parsed = parse_typestr(typestr);
    ASSERT_TRUE(parsed.has_value()) << typestr;
    EXPECT_EQ(parsed->dtype, dtype) << typestr;
    EXPECT_FALSE(parsed->big_endian) << typestr;
  }
}

TEST(DTypeTest, ParseTypestrRejectsUnsupportedTypestrs) {
  for (const std::string_view typestr :
       {"<c16", "<c8", "<U4", "O", "|O", "<f2", "<f16", "<M8", "<m8", "|V8", "|S4", "<i3", "<b2", "<u16", "", "<",
        "f", "<f8 ", " <f8", "<<f8", "ff8", "<f0", "<f9", "!f8"}) {
    EXPECT_EQ(parse_typestr(typestr).has_value(), false) << "'" << typestr << "'";
  }
}

TEST(DTypeTest, VisitDTypeCallsWithTheMatchingCppType) {
  for (const auto& f : kNumpyFacts) {
    const DType seen = visit_dtype(f.dtype, [](auto t) { return dtype_of_v<typename decltype(t)::type>; });
    const std::size_t size = visit_dtype(f.dtype, [](auto t) { return sizeof(typename decltype(t)::type); });
    EXPECT_EQ(seen, f.dtype) << f.name;
    EXPECT_EQ(size, f.size) << f.name;
  }
}

TEST(DTypeTest, DTypeOfMapsCppTypesToTheirDTypes) {
  EXPECT_EQ(dtype_of_v<bool>, DType::bool_);
  EXPECT_EQ(dtype_of_v<std::int8_t>, DType::int8);
  EXPECT_EQ(dtype_of_v<std::int16_t>, DType::int16);
  EXPECT_EQ(dtype_of_v<std::int32_t>, DType::int32);
  EXPECT_EQ(dtype_of_v<std::int64_t>, DType::int64);
  EXPECT_EQ(dtype_of_v<std::uint8_t>, DType::uint8);
  EXPECT_EQ(dtype_of_v<std::uint16_t>, DType::uint16);
  EXPECT_EQ(dtype_of_v<std::uint32_t>, DType::uint32);
  EXPECT_EQ(dtype_of_v<std::uint64_t>, DType::uint64);
  EXPECT_EQ(dtype_of_v<float>, DType::float32);
  EXPECT_EQ(dtype_of_v<double>, DType::float64);
}

}  // namespace
}  // namespace tilepool
