#pragma once
// A deterministic, dtype-appropriate value for each flat element index, so tests can fill an
// array and later check every element without keeping a copy.

#include <array>
#include <cstdint>
#include <type_traits>

#include "tilepool/shared/dtype.hpp"

namespace tilepool::testing {

/// The value of element `i`: distinct for neighbouring elements of every dtype, negative for
/// signed types, fractional for floats.
template <class T>
T pattern_value(std::int64_t i) {
  if constexpr (std::is_same_v<T, bool>) {
    return i % 3 == 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(i) * static_cast<T>(0.5) - static_cast<T>(3);
  } else if constexpr (std::is_signed_v<T>) {
    return static_cast<T>(i % 101 - 50);
  } else {
    return static_cast<T>(i * 13 + 1);
  }
}

inline constexpr std::array<DType, kDTypeCount> kAllDTypes = {
    DType::bool_, DType::int8,   DType::int16,  DType::int32,   DType::int64,   DType::uint8,
    DType::uint16, DType::uint32, DType::uint64, DType::float32, DType::float64};

}  // namespace tilepool::testing
