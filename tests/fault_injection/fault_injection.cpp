// The fault tests' hook, compiled into test-only programs and never into tilepool's libraries
// or production executables: TILEPOOL_FAULT="mid_tile|before_done|hang:TILE[:ONCE_FILE]" makes
// a worker kill itself (SIGKILL; hang: stop itself with SIGSTOP) at that point of that tile;
// with ONCE_FILE only the first worker to get there does (it creates the file). A malformed
// value fails the worker's start with Error(usage).
//
// Linked (as an object library) into tilepool-faults (the CLI), tilepool-worker-faults (the
// worker) and tilepool-fault-tests. Loading it registers the hook as the process's tile observer
// factory (set_tile_observer_factory) and, unless TILEPOOL_WORKER is set, makes the pools this
// process starts run tilepool-worker-faults, so share and copy workers have the hook too.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fmt/format.h>
#include <string>

#include "tilepool/shared/error.hpp"
#include "tilepool/workers/worker.hpp"

namespace tilepool {
namespace {

TileObserver fault_observer_from_environment() {
  const char* env = std::getenv("TILEPOOL_FAULT");
  if (env == nullptr || *env == '\0') return {};
  const std::string spec(env);
  const auto c1 = spec.find(':');
  const auto c2 = c1 == std::string::npos ? c1 : spec.find(':', c1 + 1);
  const std::string point = spec.substr(0, c1);
  const bool hang = point == "hang";
  if (point != "mid_tile" && point != "before_done" && !hang) {
    throw Error(Errc::usage, fmt::format("TILEPOOL_FAULT='{}': expected mid_tile|before_done|hang:TILE[:ONCE_FILE]", spec));
  }
  std::int64_t tile = 0;
  try {
    tile = std::stoll(spec.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1));
  } catch (const std::exception&) {
    throw Error(Errc::usage, fmt::format("TILEPOOL_FAULT='{}': expected a tile number after the point", spec));
  }
  const TilePoint at = point == "before_done" ? TilePoint::written : TilePoint::claimed;
  const std::string once_file = c2 == std::string::npos ? std::string() : spec.substr(c2 + 1);
  return [at, tile, hang, once_file](TilePoint p, std::int64_t t) {
    if (p != at || t != tile) return;
    if (!once_file.empty()) {
      const int fd = ::open(once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
      if (fd < 0) return;  // another worker faulted already
      ::close(fd);
    }
    ::raise(hang ? SIGSTOP : SIGKILL);
  };
}

[[maybe_unused]] const bool g_registered = [] {
  set_tile_observer_factory(fault_observer_from_environment);
  ::setenv("TILEPOOL_WORKER", TILEPOOL_FAULT_WORKER, /*overwrite=*/0);
  return true;
}();

}  // namespace
}  // namespace tilepool
