#pragma once
/// @file
/// Where segments live: POSIX shared memory (/dev/shm) or files under a directory.

#include <filesystem>
#include <string>
#include <string_view>

namespace tilepool {

/// A segment's backing store. Copyable value type; holds no resources.
class Backing {
 public:
  /// POSIX shared memory (the default).
  Backing() = default;
  /// Files under `dir` (for hosts whose /dev/shm is small).
  static Backing file(std::filesystem::path dir);
  /// Parses "shm" or "file:DIR"; throws Error(usage) otherwise.
  static Backing parse(std::string_view spec);

  [[nodiscard]] bool is_shm() const noexcept { return kind_ == Kind::shm; }
  /// The directory the segment files appear in: /dev/shm for shm.
  [[nodiscard]] std::filesystem::path directory() const;
  /// The path of a segment's file (for numpy: np.load(path, mmap_mode='r+')).
  [[nodiscard]] std::filesystem::path path_of(std::string_view name) const;
  /// "shm" or "file:DIR", as parse() accepts it.
  [[nodiscard]] std::string spec() const;

  friend bool operator==(const Backing&, const Backing&) = default;

 private:
  enum class Kind { shm, file };
  Kind kind_ = Kind::shm;
  std::filesystem::path dir_;
};

/// Throws Error(usage) unless `name` is a valid segment name: 1-200 characters of
/// [A-Za-z0-9._-], not starting with '.'.
void validate_segment_name(std::string_view name);

}  // namespace tilepool
