#include "tilepool/runner/job_names.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

namespace tilepool {

std::optional<unsigned long long> process_start_time(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!f || !std::getline(f, stat)) return std::nullopt;
  // Field 2 (comm) may hold spaces and parentheses: fields resume after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) return std::stoull(field);
  }
  return std::nullopt;
}

std::string job_segment_name(std::string_view role) {
  static const unsigned long long start = process_start_time(::getpid()).value_or(0);
  std::random_device rd;
  const unsigned long long r = (static_cast<unsigned long long>(rd()) << 32) | rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", r);
  return fmt::format("tilepool-{}-{}-{}-{}", ::getpid(), start, hex, role);
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

bool owner_alive(const SegmentOwner& owner) {
  const auto start = process_start_time(owner.pid);
  return start && *start == owner.start_time;
}

}  // namespace tilepool
