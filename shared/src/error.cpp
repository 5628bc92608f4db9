#include "tilepool/shared/error.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace tilepool {

Error system_error(const std::string& context, int err) {
  const Errc code = (err == ENOSPC || err == EDQUOT || err == EFBIG) ? Errc::no_space : Errc::system;
  return Error(code, fmt::format("{}: {}", context, std::strerror(err)));
}

}  // namespace tilepool
