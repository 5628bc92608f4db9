#pragma once
/// @file
/// Where segments live: POSIX shared memory (/dev/shm) or files under a directory.

#include <sys/types.h>

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
  /// The open descriptors of process `pid` (/proc/PID/fd): a segment's name is a descriptor
  /// number, so another process attaches the very object `pid` opened, whatever happened to its
  /// path since (Segment::open_file, Segment::create_unnamed_file).
  static Backing descriptors_of(pid_t pid);
  /// Parses what a user may ask for, "shm" or "file:DIR"; throws Error(usage) otherwise.
  static Backing parse(std::string_view spec);
  /// Reads back any spec() ("shm", "file:DIR", "fd:PID"): how processes of one job pass a
  /// backing to each other. Throws Error(usage) otherwise.
  static Backing from_spec(std::string_view spec);

  [[nodiscard]] bool is_shm() const noexcept { return kind_ == Kind::shm; }
  [[nodiscard]] bool is_descriptors() const noexcept { return kind_ == Kind::descriptors; }
  /// The directory the segment files appear in: /dev/shm for shm.
  [[nodiscard]] std::filesystem::path directory() const;
  /// The path of a segment's file (for numpy: np.load(path, mmap_mode='r+')).
  [[nodiscard]] std::filesystem::path path_of(std::string_view name) const;
  /// "shm", "file:DIR" or "fd:PID", as parse() accepts it.
  [[nodiscard]] std::string spec() const;

  friend bool operator==(const Backing&, const Backing&) = default;

 private:
  enum class Kind { shm, file, descriptors };
  Kind kind_ = Kind::shm;
  std::filesystem::path dir_;
};

/// Throws Error(usage) unless `name` is a valid segment name: 1-200 characters of
/// [A-Za-z0-9._-], not starting with '.'.
void validate_segment_name(std::string_view name);

}  // namespace tilepool
