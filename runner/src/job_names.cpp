#include "tilepool/runner/job_names.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <random>

#include "tilepool/shared/backing.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {

std::string job_segment_name(std::string_view role) {
  const ProcessOwner owner = this_process();  // a forked child names itself, not its parent
  std::random_device rd;
  const unsigned long long r = (static_cast<unsigned long long>(rd()) << 32) | rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", r);
  return fmt::format("tilepool-{}-{}-{}-{}", owner.pid, owner.start_time, hex, role);
}

void validate_user_segment_name(std::string_view name) {
  validate_segment_name(name);
  // Before: accepted, and removed by the next gc once no process had that pid.
  if (parse_job_segment_name(name)) {
    throw Error(Errc::usage, fmt::format("segment name '{}' has the form of a job's own segment names "
                                         "(tilepool-PID-START-RANDOM-ROLE), which gc removes: choose another",
                                         name));
  }
}

std::optional<SegmentOwner> parse_job_segment_name(std::string_view name) {
  constexpr std::string_view kPrefix = "tilepool-";
  if (!name.starts_with(kPrefix)) return std::nullopt;
  name.remove_prefix(kPrefix.size());
  SegmentOwner owner;
  auto number = [&](auto& out) {
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), out);
    if (ec != std::errc() || end == name.data() || end == name.data() + name.size() || *end != '-') return false;
    name.remove_prefix(static_cast<std::size_t>(end - name.data()) + 1);
    return true;
  };
  if (!number(owner.pid) || !number(owner.start_time)) return std::nullopt;
  if (name.size() < 18 || name[16] != '-') return std::nullopt;
  return owner;
}

}  // namespace tilepool
