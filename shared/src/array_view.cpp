#include "tilepool/shared/array_view.hpp"

#include <fmt/format.h>

namespace tilepool {

Error dtype_mismatch(DType actual, DType requested) {
  return Error(Errc::bad_input, fmt::format("array is {}, viewed as {}", dtype_name(actual), dtype_name(requested)));
}

Error outside_window(const Box& box, const Box& window, int input) {
  const auto text = [](const Box& b) {
    std::string s = "[";
    for (int a = 0; a < b.ndim; ++a) {
      const auto i = static_cast<std::size_t>(a);
      s += fmt::format("{}{}:{}", a > 0 ? ", " : "", b.lo[i], b.hi[i]);
    }
    return s + "]";
  };
  const std::string array = input == kOutputWindow ? std::string("the output") : fmt::format("input {}", input + 1);
  return Error(Errc::job_failed, fmt::format("it asked for {} of {}, of which this process holds only {}: a kernel reads "
                                             "only inside the input region it declares (input_region) and writes only its tile",
                                             text(box), array, text(window)));
}

}  // namespace tilepool
