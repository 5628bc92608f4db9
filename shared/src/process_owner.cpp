#include "tilepool/shared/process_owner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstddef>
#include <mutex>
#include <string_view>

#include <fmt/format.h>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

// Fields 3 (state) and 22 (start time, in clock ticks after boot) of /proc/PID/stat (proc(5)).
struct StatFields {
  char state = 0;
  unsigned long long start_time = 0;
};

std::optional<StatFields> read_stat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string path = fmt::format("/proc/{}/stat", pid);
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  // The line is short (comm is at most 16 bytes; 52 numeric fields), well under this buffer.
  char buffer[1024];
  const long n = detail::read_full(fd.get(), std::as_writable_bytes(std::span(buffer)), 0);
  if (n <= 0) return std::nullopt;
  std::string_view stat(buffer, static_cast<std::size_t>(n));
  // Field 2 (comm) may hold spaces and parentheses: the fields resume after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  stat.remove_prefix(close + 1);
  StatFields fields;
  for (int field = 3; field <= 22; ++field) {
    const auto begin = stat.find_first_not_of(' ');
    if (begin == std::string_view::npos) return std::nullopt;
    stat.remove_prefix(begin);
    const auto end = std::min(stat.find(' '), stat.size());
    if (field == 3) fields.state = stat.front();
    if (field == 22) {
      const auto [ptr, ec] = std::from_chars(stat.data(), stat.data() + end, fields.start_time);
      if (ec != std::errc() || ptr != stat.data() + end) return std::nullopt;
      return fields;
    }
    stat.remove_prefix(end);
  }
  return std::nullopt;
}

}  // namespace

std::optional<unsigned long long> process_start_time(pid_t pid) {
  const auto fields = read_stat(pid);
  return fields ? std::optional(fields->start_time) : std::nullopt;
}

namespace {

// This process's owner, cached per pid (a forked child is another process with its own start
// time). A failed read is never cached: an owner with start time 0 would look dead to every
// sweep, which would then remove this live process's segments and temporaries.
struct OwnerCache {
  std::mutex mutex;
  ProcessOwner owner{};
  // Fills the cache for this pid if it can; false (errno set) if /proc could not tell.
  bool fill_locked() {
    const pid_t pid = ::getpid();
    if (owner.pid == pid) return true;
    const auto start = process_start_time(pid);
    if (!start) return false;
    owner = ProcessOwner{pid, *start};
    return true;
  }
};
OwnerCache& owner_cache() {
  static OwnerCache cache;
  return cache;
}
// Read when the library loads, while the program has descriptors to spare: a command that
// then runs at its descriptor limit (`tilepool get` needs exactly its files) still names its
// temporaries with its real start time.
[[maybe_unused]] const bool g_owner_read_early = [] {
  OwnerCache& cache = owner_cache();
  const std::lock_guard lock(cache.mutex);
  return cache.fill_locked();
}();

}  // namespace

ProcessOwner this_process() {
  OwnerCache& cache = owner_cache();
  const std::lock_guard lock(cache.mutex);
  if (!cache.fill_locked()) {
    throw system_error(fmt::format("reading this process's start time from /proc/{}/stat", ::getpid()), errno != 0 ? errno : EIO);
  }
  return cache.owner;
}

bool owner_alive(const ProcessOwner& owner) {
  // A zombie (its parent has not reaped it; in a container whose init reaps nothing it stays)
  // runs no code again: its segments are leftovers like a dead process's.
  const auto fields = read_stat(owner.pid);
  return fields && fields->start_time == owner.start_time && fields->state != 'Z' && fields->state != 'X';
}

}  // namespace tilepool
