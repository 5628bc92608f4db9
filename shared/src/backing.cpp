#include "tilepool/shared/backing.hpp"

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool {

Backing Backing::file(std::filesystem::path dir) {
  Backing b;
  b.kind_ = Kind::file;
  b.dir_ = std::move(dir);
  return b;
}

Backing Backing::descriptors_of(pid_t pid) {
  Backing b;
  b.kind_ = Kind::descriptors;
  b.dir_ = fmt::format("/proc/{}/fd", pid);
  return b;
}

Backing Backing::from_spec(std::string_view spec) {
  if (spec.starts_with("fd:") && spec.size() > 3 && spec.size() < 13 &&
      spec.find_first_not_of("0123456789", 3) == std::string_view::npos) {
    return descriptors_of(static_cast<pid_t>(std::stol(std::string(spec.substr(3)))));
  }
  return parse(spec);
}

Backing Backing::parse(std::string_view spec) {
  if (spec == "shm") return {};
  if (spec.starts_with("file:") && spec.size() > 5) {
    std::filesystem::path dir(spec.substr(5));
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      throw Error(Errc::usage, fmt::format("file backing: {} is not a directory", dir.string()));
    }
    return file(std::move(dir));
  }
  throw Error(Errc::usage, fmt::format("unknown backing '{}': expected shm or file:DIR", spec));
}

std::filesystem::path Backing::directory() const { return kind_ == Kind::shm ? "/dev/shm" : dir_; }

std::filesystem::path Backing::path_of(std::string_view name) const { return directory() / std::string(name); }

std::string Backing::spec() const {
  switch (kind_) {
    case Kind::shm: return "shm";
    case Kind::file: return "file:" + dir_.string();
    case Kind::descriptors: return "fd:" + dir_.parent_path().filename().string();
  }
  return "shm";
}

void validate_segment_name(std::string_view name) {
  constexpr std::size_t kMaxName = 200;
  bool ok = !name.empty() && name.size() <= kMaxName && name.front() != '.';
  for (const char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                c == '_' || c == '-');
  }
  if (!ok) {
    throw Error(Errc::usage, fmt::format("segment name '{}' is invalid (expected 1-{} characters of A-Z a-z 0-9 . _ -, "
                                         "not starting with '.')",
                                         escape_for_message(name), kMaxName));
  }
}

}  // namespace tilepool
