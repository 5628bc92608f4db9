#pragma once
// Helpers every tilepool test uses: unique segment names and a /dev/shm leak check.

#include <filesystem>
#include <initializer_list>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/shared/tiling.hpp"

namespace tilepool::testing {

/// A segment name no other test or process uses: "tptest-<pid>-<n>-<tag>".
std::string unique_name(std::string_view tag = "seg");

/// The prefix of every name unique_name() makes in this process.
std::string name_prefix();

/// Entries of `dir` (default /dev/shm) whose names start with `prefix`.
std::vector<std::string> entries_with_prefix(const std::string& prefix, const std::filesystem::path& dir = "/dev/shm");

/// Entries this test process may have left in /dev/shm: its unique_name()s and the job
/// segments a Pool in this process makes ("tilepool-<pid>-...").
std::vector<std::string> leftovers();

/// A fresh temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::filesystem::path operator/(std::string_view name) const { return path_ / std::string(name); }

 private:
  std::filesystem::path path_;
};

/// Runs a shell command line; returns its exit status (or -1) and captures stdout+stderr.
struct CommandResult {
  int status = -1;
  std::string output;
};
CommandResult run_command(const std::string& command_line);

/// Runs `/usr/bin/python3 -c <code>` with numpy available; returns status and output.
CommandResult run_python(const std::string& code);

/// A box from [lo, hi) ranges, one per axis: make_box({{0, 4}, {4, 8}}).
inline Box make_box(std::initializer_list<std::pair<std::int64_t, std::int64_t>> ranges) {
  Box b;
  for (const auto& [lo, hi] : ranges) {
    b.lo[static_cast<std::size_t>(b.ndim)] = lo;
    b.hi[static_cast<std::size_t>(b.ndim)] = hi;
    ++b.ndim;
  }
  return b;
}

}  // namespace tilepool::testing
