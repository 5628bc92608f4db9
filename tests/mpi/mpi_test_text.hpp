#pragma once
// What both MPI suites read back from a run: a file's bytes and a command's non-empty lines.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tilepool::testing {

/// The whole file, as bytes in a string ("" if it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The non-empty lines of `text`, in order.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

}  // namespace tilepool::testing
