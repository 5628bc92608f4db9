#include "tilepool/shared/dtype.hpp"

#include <array>
#include <bit>

namespace tilepool {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::string_view typestr;
  std::size_t size;
  char kind;  // numpy kind: b i u f
};

constexpr std::array<DTypeInfo, kDTypeCount> kInfo = {{
    {DType::bool_, "bool", "|b1", 1, 'b'},
    {DType::int8, "int8", "|i1", 1, 'i'},
    {DType::int16, "int16", "<i2", 2, 'i'},
    {DType::int32, "int32", "<i4", 4, 'i'},
    {DType::int64, "int64", "<i8", 8, 'i'},
    {DType::uint8, "uint8", "|u1", 1, 'u'},
    {DType::uint16, "uint16", "<u2", 2, 'u'},
    {DType::uint32, "uint32", "<u4", 4, 'u'},
    {DType::uint64, "uint64", "<u8", 8, 'u'},
    {DType::float32, "float32", "<f4", 4, 'f'},
    {DType::float64, "float64", "<f8", 8, 'f'},
}};

const DTypeInfo& info(DType dt) noexcept { return kInfo[static_cast<std::size_t>(dt)]; }

}  // namespace

std::string_view dtype_name(DType dt) noexcept { return info(dt).name; }
std::string_view dtype_typestr(DType dt) noexcept { return info(dt).typestr; }
std::size_t dtype_size(DType dt) noexcept { return info(dt).size; }
bool dtype_is_integer(DType dt) noexcept { return info(dt).kind == 'i' || info(dt).kind == 'u'; }
bool dtype_is_float(DType dt) noexcept { return info(dt).kind == 'f'; }
bool dtype_is_signed(DType dt) noexcept { return info(dt).kind == 'i' || info(dt).kind == 'f'; }

std::optional<DType> dtype_from_name(std::string_view name) noexcept {
  for (const auto& i : kInfo) {
    if (i.name == name) return i.dtype;
  }
  return std::nullopt;
}

std::optional<TypestrInfo> parse_typestr(std::string_view typestr) noexcept {
  // numpy typestrs: an optional byte-order char, a kind char, an item size in bytes.
  char order = '=';
  if (!typestr.empty() && (typestr[0] == '<' || typestr[0] == '>' || typestr[0] == '|' || typestr[0] == '=')) {
    order = typestr[0];
    typestr.remove_prefix(1);
  }
  if (typestr.size() != 2) return std::nullopt;
  const char kind = typestr[0];
  if (typestr[1] < '1' || typestr[1] > '8') return std::nullopt;
  const auto size = static_cast<std::size_t>(typestr[1] - '0');
  for (const auto& i : kInfo) {
    if (i.kind != kind || i.size != size) continue;
    // '>' only matters for multi-byte types; this build runs on little-endian hosts only.
    return TypestrInfo{i.dtype, order == '>' && size > 1};
  }
  return std::nullopt;
}

static_assert(std::endian::native == std::endian::little, "tilepool assumes a little-endian host");

}  // namespace tilepool
