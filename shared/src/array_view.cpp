#include "tilepool/shared/array_view.hpp"

#include <fmt/format.h>

namespace tilepool {

Error dtype_mismatch(DType actual, DType requested) {
  return Error(Errc::bad_input, fmt::format("array is {}, viewed as {}", dtype_name(actual), dtype_name(requested)));
}

}  // namespace tilepool
