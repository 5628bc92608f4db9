#include "tilepool/shared/error.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace tilepool {

std::optional<Errc> errc_from_wire(std::int32_t code) noexcept {
  // Every enumerator is listed: a new one that is not is a -Wswitch warning here.
  switch (const auto e = static_cast<Errc>(code)) {
    case Errc::usage:
    case Errc::bad_input:
    case Errc::exists:
    case Errc::no_space:
    case Errc::system:
    case Errc::job_failed:
    case Errc::interrupted:
      return e;
  }
  return std::nullopt;
}

Error system_error(const std::string& context, int err) {
  if (err == EMFILE) {  // the user's limit, not a fault: say what it is and how to raise it
    rlimit rl{};
    (void)::getrlimit(RLIMIT_NOFILE, &rl);
    return Error(Errc::usage, fmt::format("{}: out of file descriptors: this process may open {} (ulimit -n; hard limit {}); "
                                          "raise the limit",
                                          context, rl.rlim_cur, rl.rlim_max),
                 err);
  }
  const Errc code = (err == ENOSPC || err == EDQUOT || err == EFBIG) ? Errc::no_space : Errc::system;
  return Error(code, fmt::format("{}: {}", context, std::strerror(err)), err);
}

}  // namespace tilepool
