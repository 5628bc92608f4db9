#pragma once
// Private to workers/kernels: numpy-semantics integer arithmetic that the built-in kernels
// share. Everything else they use is the public kernel-authoring API (kernel_api.hpp).

#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel_api.hpp"

namespace tilepool::kernels {

/// An unsigned type at least as wide as `unsigned`, so integer arithmetic wraps like numpy's
/// instead of overflowing (undefined behaviour) or promoting to int.
template <class T>
using WrapType = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <class T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

struct WrapAdd {
  template <class T> T operator()(T a, T b) const noexcept {
    if constexpr (std::is_same_v<T, bool>) return a || b;  // numpy: bool + bool is logical or
    else return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
  }
};
struct WrapNegate {
  template <class T> T operator()(T a) const noexcept { return static_cast<T>(WrapType<T>(0) - static_cast<WrapType<T>>(a)); }
};
struct WrapSquare {
  template <class T> T operator()(T a) const noexcept { return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(a)); }
};

}  // namespace tilepool::kernels
