#pragma once
/// @file
/// Named shared-memory segments: move-only RAII handles over a mapping that views keep alive.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tilepool/shared/backing.hpp"
#include "tilepool/shared/byte_range.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool {

/// A live memory mapping of a segment. Shared: every view of the segment holds a
/// shared_ptr to it, so the memory stays mapped while any view exists, even after the
/// Segment handle is gone or the name was removed. Safe to share across threads.
/// A segment's mapping keeps the object's descriptor open and is registered with
/// guard_faults (fault_guard.hpp) while it exists, so a fault on it can name the segment.
class Mapping {
 public:
  virtual ~Mapping() = default;
  [[nodiscard]] virtual std::byte* data() const noexcept = 0;
  [[nodiscard]] virtual std::size_t size() const noexcept = 0;
  [[nodiscard]] std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
};

/// What a segment is rather than what it is called: the device and inode of the object and
/// its size, read with fstat on the descriptor it was opened with. Two handles with equal
/// identities map the same object; an object removed and re-created under the same name, or
/// truncated, has another identity. A plain value (trivially copyable: it can be stored in a
/// control block or passed to another process).
struct SegmentIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  friend bool operator==(const SegmentIdentity&, const SegmentIdentity&) = default;
};

/// "device 0:26, inode 1234, 4096 bytes".
std::string to_string(const SegmentIdentity& identity);

/// The file (or segment) mapped at `address` in this process, as /proc/self/maps says: its
/// device and inode (size 0: not known there); nullopt for memory that maps no file. For memory
/// a caller mapped itself (a numpy memmap): which object it is, whatever its path names now.
std::optional<SegmentIdentity> mapped_object_at(const void* address);
std::ostream& operator<<(std::ostream& out, const SegmentIdentity& identity);

/// Options for Segment::create / Segment::attach.
struct MapOptions {
  bool populate = true;  ///< pre-fault every page (MAP_POPULATE) so first touch costs nothing later
  /// Open O_RDONLY and map PROT_READ: attaches a segment this user may only read (mode 0400, a
  /// read-only mount or directory); a write through the mapping faults (SIGSEGV; see
  /// guard_faults) instead of changing the data.
  bool read_only = false;
  /// Attach only: the identity the segment had when it was first attached (Segment::identity).
  /// Attach refuses with Error(bad_input) if the object now under the name is another object
  /// or has another size, so a job never reads or writes an object that merely took the name.
  std::optional<SegmentIdentity> expected_identity;
  /// Create only: reserve every byte with posix_fallocate (a full store fails at creation). With
  /// false the object is only sized (ftruncate): for a caller that writes every byte at once
  /// with copy_from, which reports a full store itself, so no page is zeroed and then written.
  /// With reserve_only too, a full store is reported as needing the whole size (the caller
  /// writes every byte), not just the ranges reserved first.
  bool reserve = true;
  /// Create only: reserve (posix_fallocate) just these byte ranges instead of the whole
  /// segment. The segment has its full size, but is sparse: on tmpfs a page outside the ranges
  /// takes no memory until it is written. A distributed job's node holds only its share of an
  /// array this way. Only the reserved ranges are safe to write when the store is full (a write
  /// elsewhere may then SIGBUS); such a segment is not pre-faulted (populate is ignored).
  std::optional<std::vector<ByteRange>> reserve_only;
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

  /// Maps an existing segment by name. A sparse object (fewer blocks allocated than its size,
  /// see MapOptions::reserve_only) is not pre-faulted whatever options.populate says: faulting
  /// its holes in would allocate them. Checks it is a regular file owned by this uid, at
  /// least `min_size` bytes and, if options.expected_identity is set, still that object:
  /// "segment 'x' was replaced or resized since the job started: ...". Throws
  /// Error(bad_input) if absent or wrong.
  static Segment attach(std::string name, const Backing& backing = {}, MapOptions options = {},
                        std::size_t min_size = 0);

  /// Maps an existing file by its path, as it is (an input the user named: any owner, symlinks
  /// followed). The segment is named by the descriptor it keeps open: name() is its number and
  /// backing() is Backing::descriptors_of(getpid()), so another process attaches the very object
  /// opened here (/proc/PID/fd/N), whatever happens to the path later. Throws Error(bad_input)
  /// naming `path` if it is missing, unreadable, empty or not a regular file.
  static Segment open_file(const std::filesystem::path& path, MapOptions options = {});

  /// Creates a file of `size` bytes that will become `target` once publish_file() is called,
  /// and until then has no name (O_TMPFILE: it vanishes with this process, even after SIGKILL)
  /// or a hidden temporary one beside `target` where the filesystem lacks O_TMPFILE or
  /// `publish.temporary` asks for a name (PendingFile, publish.hpp: how it will be published
  /// is decided here, before any work). Named by its descriptor as open_file's; space reserved
  /// with posix_fallocate. Throws Error(no_space) "OUT: not enough space in DIR: ...",
  /// Error(bad_input) if target's directory is not a writable directory or the filesystem
  /// could not publish without replacing and `publish.replace` is false.
  static Segment create_pending_file(const std::filesystem::path& target, std::size_t size,
                                     const PublishOptions& publish = {}, MapOptions options = {});

  /// Copies `length` bytes of the open file `source` from `source_offset` into this segment at
  /// `offset`, inside the kernel (copy_file_range, else sendfile): no user-space buffer and no
  /// fault on the mapping. Throws Error(no_space) if the store fills up, Error(bad_input) if the
  /// file is shorter than `source_offset + length`, Error(system) otherwise.
  void copy_from(int source, std::uint64_t source_offset, std::size_t offset, std::size_t length);

  /// Gives a create_pending_file() segment its target path in one step (PendingFile::publish:
  /// readers of the path see the old file or the whole new one; the directory is synced).
  /// Never replaces an existing file unless `replace` (Error(exists)). Afterwards the file is
  /// the user's and this handle removes nothing.
  void publish_file(bool replace);
  /// Makes what was written into the segment so far safe where its store's filesystem could
  /// lose it (sync_before_publishing: a FUSE or network mount; nothing for /dev/shm or a local
  /// disk), so a store that cannot take even a header fails here, before any work, and not as
  /// zeros that a worker reads later. Throws Error(no_space|system) "...: writing its data: ...".
  void sync_data() const;
  /// The pending file of a create_pending_file() segment (its target, its hidden temporary
  /// path if it has one); nullptr for other segments and once published.
  [[nodiscard]] const PendingFile* pending_file() const noexcept { return pending_.get(); }

  Segment(Segment&& other) noexcept;
  Segment& operator=(Segment&& other) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  /// Drops this handle's reference to the mapping; removes the name as remove_name() does.
  ~Segment();

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const Backing& backing() const noexcept { return backing_; }
  [[nodiscard]] std::byte* data() const noexcept { return mapping_->data(); }
  [[nodiscard]] std::size_t size() const noexcept { return mapping_->size(); }
  [[nodiscard]] const std::shared_ptr<Mapping>& mapping() const noexcept { return mapping_; }
  /// The object this handle mapped (device, inode, size when it was opened).
  [[nodiscard]] const SegmentIdentity& identity() const noexcept { return identity_; }
  /// True if the mapping is read-only (MapOptions::read_only).
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }
  /// True if destroying this handle removes the name.
  [[nodiscard]] bool owns_name() const noexcept { return owns_name_; }
  /// Keeps the name after this handle is destroyed (user-named segments: `tilepool put`).
  void release_name() noexcept { owns_name_ = false; }
  /// Removes the name now (if owned, and only while it still names this handle's object: a
  /// new object that took the name is left alone); the mapping stays valid for existing views.
  void remove_name() noexcept;
  /// Moves this handle's segment onto the name `to` in one step (publish_segment, checking the
  /// object is still this handle's) and gives the name up: afterwards name() is `to` and
  /// destroying the handle removes nothing. Needs a handle that owns its name (a creator);
  /// throws as publish_segment, leaving the handle unchanged.
  void publish(std::string to, bool replace);

 private:
  Segment(std::string name, Backing backing, std::shared_ptr<Mapping> mapping, SegmentIdentity identity,
          bool read_only, bool owns);

  std::string name_;
  Backing backing_;
  std::shared_ptr<Mapping> mapping_;
  SegmentIdentity identity_;
  bool read_only_ = false;
  bool owns_name_ = false;
  /// create_pending_file: the file until it is published (it removes its temporary).
  std::unique_ptr<PendingFile> pending_;
};

/// Publishes a finished segment: renames `from` to `to` in the same backing in one step, so
/// readers of `to` see the old object or the whole new one, never a partial one (publish_path,
/// which then syncs the directory). With
/// `replace == false` an existing `to` is never overwritten (Error(exists); renameat2 with
/// RENAME_NOREPLACE, or link + unlink where the filesystem lacks it). With `replace == true`
/// an existing `to` is replaced atomically; processes that mapped the old object keep it.
/// `from` must be a regular file owned by this uid (and, if `expected` is given, still that
/// object); an existing `to` that is not, is refused. Throws Error(bad_input|exists|system).
void publish_segment(std::string_view from, std::string_view to, const Backing& backing, bool replace,
                     std::optional<SegmentIdentity> expected = std::nullopt);

/// Whether remove_segment would remove `name`: false if it does not exist; throws as
/// remove_segment does for what it refuses. Removes nothing.
bool segment_removable(std::string_view name, const Backing& backing = {});

/// Removes a segment by name if it is a regular file owned by this uid. Returns false if it
/// did not exist; throws Error(bad_input) if it belongs to someone else or is not a file.
bool remove_segment(std::string_view name, const Backing& backing = {});

/// True if a segment of that name exists in the backing store (any owner). Throws
/// Error(usage) for an invalid name (so "../x" never looks outside the store).
bool segment_exists(std::string_view name, const Backing& backing = {});

}  // namespace tilepool
