#pragma once
/// @file
/// The element types tilepool supports and their numpy typestrs.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tilepool {

/// An array element type. The values are stable: they are stored in control blocks.
enum class DType : std::uint8_t {
  bool_ = 0, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64,
};

inline constexpr int kDTypeCount = 11;

/// The numpy name, e.g. "float64".
std::string_view dtype_name(DType dt) noexcept;
/// The little-endian numpy typestr, e.g. "<f8" or "|u1".
std::string_view dtype_typestr(DType dt) noexcept;
/// Bytes per element.
std::size_t dtype_size(DType dt) noexcept;
bool dtype_is_integer(DType dt) noexcept;  ///< signed or unsigned integer (not bool)
bool dtype_is_float(DType dt) noexcept;
bool dtype_is_signed(DType dt) noexcept;   ///< signed integer or float

/// Parses a numpy name such as "float64" or "uint8".
std::optional<DType> dtype_from_name(std::string_view name) noexcept;

/// A parsed numpy typestr: the dtype and whether its bytes are big-endian.
struct TypestrInfo {
  DType dtype;
  bool big_endian = false;
};
/// Parses a numpy typestr ('<f8', '>i4', '|b1', '=u2', 'f8'); nullopt for anything unsupported.
std::optional<TypestrInfo> parse_typestr(std::string_view typestr) noexcept;

/// The DType of a C++ element type.
template <class T> struct dtype_of;
template <> struct dtype_of<bool> : std::integral_constant<DType, DType::bool_> {};
template <> struct dtype_of<std::int8_t> : std::integral_constant<DType, DType::int8> {};
template <> struct dtype_of<std::int16_t> : std::integral_constant<DType, DType::int16> {};
template <> struct dtype_of<std::int32_t> : std::integral_constant<DType, DType::int32> {};
template <> struct dtype_of<std::int64_t> : std::integral_constant<DType, DType::int64> {};
template <> struct dtype_of<std::uint8_t> : std::integral_constant<DType, DType::uint8> {};
template <> struct dtype_of<std::uint16_t> : std::integral_constant<DType, DType::uint16> {};
template <> struct dtype_of<std::uint32_t> : std::integral_constant<DType, DType::uint32> {};
template <> struct dtype_of<std::uint64_t> : std::integral_constant<DType, DType::uint64> {};
template <> struct dtype_of<float> : std::integral_constant<DType, DType::float32> {};
template <> struct dtype_of<double> : std::integral_constant<DType, DType::float64> {};
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

/// Calls f(std::type_identity<T>{}) with the C++ type of dt and returns what f returns.
template <class F>
decltype(auto) visit_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::bool_: return std::forward<F>(f)(std::type_identity<bool>{});
    case DType::int8: return std::forward<F>(f)(std::type_identity<std::int8_t>{});
    case DType::int16: return std::forward<F>(f)(std::type_identity<std::int16_t>{});
    case DType::int32: return std::forward<F>(f)(std::type_identity<std::int32_t>{});
    case DType::int64: return std::forward<F>(f)(std::type_identity<std::int64_t>{});
    case DType::uint8: return std::forward<F>(f)(std::type_identity<std::uint8_t>{});
    case DType::uint16: return std::forward<F>(f)(std::type_identity<std::uint16_t>{});
    case DType::uint32: return std::forward<F>(f)(std::type_identity<std::uint32_t>{});
    case DType::uint64: return std::forward<F>(f)(std::type_identity<std::uint64_t>{});
    case DType::float32: return std::forward<F>(f)(std::type_identity<float>{});
    case DType::float64: break;
  }
  return std::forward<F>(f)(std::type_identity<double>{});
}

}  // namespace tilepool
