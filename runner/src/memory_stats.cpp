#include "tilepool/runner/memory_stats.hpp"

#include <unistd.h>

#include <fstream>
#include <string>

namespace tilepool {

std::uint64_t pss_bytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string key;
  std::uint64_t kb = 0;
  while (f >> key) {
    if (key == "Pss:") {
      f >> kb;
      return kb * 1024;
    }
    f.ignore(4096, '\n');
  }
  return 0;
}

std::uint64_t pss_bytes_with(std::span<const pid_t> children) {
  std::uint64_t total = pss_bytes(::getpid());
  for (const pid_t p : children) total += pss_bytes(p);
  return total;
}

}  // namespace tilepool
