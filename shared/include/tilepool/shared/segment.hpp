#pragma once
/// @file
/// Named shared-memory segments: move-only RAII handles over a mapping that views keep alive.

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "tilepool/shared/backing.hpp"

namespace tilepool {

/// A live memory mapping of a segment. Shared: every view of the segment holds a
/// shared_ptr to it, so the memory stays mapped while any view exists, even after the
/// Segment handle is gone or the name was removed. Safe to share across threads.
class Mapping {
 public:
  virtual ~Mapping() = default;
  [[nodiscard]] virtual std::byte* data() const noexcept = 0;
  [[nodiscard]] virtual std::size_t size() const noexcept = 0;
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
};

/// Options for Segment::create / Segment::attach.
struct MapOptions {
  bool populate = true;  ///< pre-fault every page (MAP_POPULATE) so first touch costs nothing later
  bool read_only = false;
};

/// A named segment: a handle that maps it and, if this handle created it, removes the
/// name when destroyed. Move-only. The creator owns the name; an attacher never removes it.
/// Not thread-safe to mutate; the mapped memory itself is shared by design.
class Segment {
 public:
  /// Creates a new segment of `size` bytes with O_CREAT|O_EXCL and mode 0600 (whatever the
  /// umask), reserving the space with posix_fallocate so a full store fails here, not with a
  /// SIGBUS later. Throws Error(exists) if the name is taken (by anyone, any mode, a symlink),
  /// Error(no_space) if the store is too small, Error(usage) for a bad name.
  static Segment create(std::string name, std::size_t size, const Backing& backing = {},
                        MapOptions options = {});

  /// Maps an existing segment by name. Checks it is a regular file owned by this uid and at
  /// least `min_size` bytes. Throws Error(bad_input) if absent or wrong.
  static Segment attach(std::string name, const Backing& backing = {}, MapOptions options = {},
                        std::size_t min_size = 0);

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  /// Drops this handle's reference to the mapping; removes the name if this handle owns it.
  ~Segment();

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const Backing& backing() const noexcept { return backing_; }
  [[nodiscard]] std::byte* data() const noexcept { return mapping_->data(); }
  [[nodiscard]] std::size_t size() const noexcept { return mapping_->size(); }
  [[nodiscard]] const std::shared_ptr<Mapping>& mapping() const noexcept { return mapping_; }
  /// True if destroying this handle removes the name.
  [[nodiscard]] bool owns_name() const noexcept { return owns_name_; }
  /// Keeps the name after this handle is destroyed (user-named segments: `tilepool put`).
  void release_name() noexcept { owns_name_ = false; }
  /// Removes the name now (if owned); the mapping stays valid for existing views.
  void remove_name() noexcept;

 private:
  Segment(std::string name, Backing backing, std::shared_ptr<Mapping> mapping, bool owns);

  std::string name_;
  Backing backing_;
  std::shared_ptr<Mapping> mapping_;
  bool owns_name_ = false;
};

/// Removes a segment by name if it is a regular file owned by this uid. Returns false if it
/// did not exist; throws Error(bad_input) if it belongs to someone else or is not a file.
bool remove_segment(std::string_view name, const Backing& backing = {});

/// True if a segment of that name exists in the backing store (any owner). Throws
/// Error(usage) for an invalid name (so "../x" never looks outside the store).
bool segment_exists(std::string_view name, const Backing& backing = {});

}  // namespace tilepool
