#include "support/test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace tilepool::testing {

std::string name_prefix() { return "tptest-" + std::to_string(::getpid()) + "-"; }

std::string unique_name(std::string_view tag) {
  static std::atomic<int> counter{0};
  return name_prefix() + std::to_string(counter++) + "-" + std::string(tag);
}

std::vector<std::string> entries_with_prefix(const std::string& prefix, const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.starts_with(prefix)) out.push_back(n);
  }
  return out;
}

std::vector<std::string> leftovers() {
  auto out = entries_with_prefix(name_prefix());
  for (auto& n : entries_with_prefix("tilepool-" + std::to_string(::getpid()) + "-")) out.push_back(std::move(n));
  return out;
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() / ("tilepool-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command_line) {
  CommandResult r;
  const std::string cmd = command_line + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

CommandResult run_python(const std::string& code) {
  // Single-quote the program for the shell.
  std::string quoted = "'";
  for (const char c : code) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += "'";
  return run_command(std::string(TILEPOOL_PYTHON) + " -c " + quoted);
}

}  // namespace tilepool::testing
