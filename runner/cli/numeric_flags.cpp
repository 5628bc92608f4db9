// Range checks of numeric options (see numeric_flags.hpp). Each validator sees the text the
// user typed and answers with the message CLI11 puts after the flag's name: main() prints it as
// "tilepool: error: --workers: 4097 is out of range: ...", exit 2.
#include "numeric_flags.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>
#include <string>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/control_block.hpp"

namespace tilepool::cli {

CLI::Validator worker_count_range() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        long long n = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec == std::errc::invalid_argument || end != text.data() + text.size()) {
          return fmt::format("'{}' is not a whole number of workers", text);
        }
        if (ec == std::errc::result_out_of_range || n < 0 || n > kMaxWorkers) {
          return fmt::format("{} is out of range: expected 1 to {} (0: one per core)", text, kMaxWorkers);
        }
        return {};
      },
      fmt::format("0..{}", kMaxWorkers), "worker count");
}

CLI::Validator tile_timeout_range() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double s = std::strtod(text.c_str(), &end);
        // strtod reads C's hex floats too ("0x10"); no other number option takes them.
        if (text.empty() || end != text.c_str() + text.size() || std::isnan(s) || text.find_first_of("xX") != std::string::npos) {
          return fmt::format("'{}' is not a number of seconds", text);
        }
        // ERANGE: too small to be a double (1e-400 read as 0, "no timeout") or too big.
        if (errno == ERANGE || !std::isfinite(s) || s < 0 || s > kMaxTileTimeoutSeconds) {
          return fmt::format("{} is out of range: expected 0 (no timeout) to {:.0f} seconds", text, kMaxTileTimeoutSeconds);
        }
        return {};
      },
      "SECONDS >= 0", "tile timeout");
}

}  // namespace tilepool::cli
