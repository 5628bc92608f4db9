#include "tilepool/shared/segment.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <ostream>
#include <utility>
#include <vector>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/fault_guard.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/publish.hpp"

namespace bip = boost::interprocess;

namespace tilepool {
namespace {

constexpr mode_t kSegmentMode = 0600;

// Lets Boost.Interprocess map a descriptor we opened ourselves (file backing, where Boost's
// file_mapping cannot create with O_EXCL or refuse symlinks).
class FdMappable {
 public:
  FdMappable(int fd, bip::mode_t mode) : fd_(fd), mode_(mode) {}
  [[nodiscard]] bip::mapping_handle_t get_mapping_handle() const noexcept {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd_);
  }
  [[nodiscard]] bip::mode_t get_mode() const noexcept { return mode_; }

 private:
  int fd_;
  bip::mode_t mode_;
};

// An open segment object: a descriptor (owned by the Boost object or by us).
struct OpenObject {
  bip::shared_memory_object shm;  // used for shm backing
  detail::UniqueFd fd;            // used for file backing
  [[nodiscard]] int native() const noexcept { return fd ? fd.get() : shm.get_mapping_handle().handle; }
};

// A mapped segment. It keeps its descriptor open, so that a fault report can fstat how large
// the object is now, and registers its range with guard_faults while it is mapped.
class RegionMapping final : public Mapping {
 public:
  RegionMapping(OpenObject object, bip::mapped_region region, std::string label, bool read_only)
      : object_(std::move(object)),
        region_(std::move(region)),
        registration_(std::span<const std::byte>(data(), size()), std::move(label), object_.native(), read_only) {}
  std::byte* data() const noexcept override { return static_cast<std::byte*>(region_.get_address()); }
  std::size_t size() const noexcept override { return region_.get_size(); }

 private:
  // Members are destroyed in reverse: unregister, then unmap, then close the descriptor.
  OpenObject object_;
  bip::mapped_region region_;
  FaultRegistration registration_;
};

// What a descriptor refers to, for messages: its path, or "/dir/#123 (deleted)" for an
// unnamed file.
std::string file_path_of(const std::filesystem::path& link) {
  std::error_code ec;
  const auto target = std::filesystem::read_symlink(link, ec);
  return ec ? link.string() : target.string();
}

// "segment 'x' (/dev/shm/x)": the name is validated; the backing directory may hold any byte.
// A descriptor of a runner is named by the file it opened: "file /data/a.npy".
std::string where(std::string_view name, const Backing& backing) {
  if (backing.is_descriptors()) return fmt::format("file {}", escape_for_message(file_path_of(backing.path_of(name))));
  return fmt::format("segment '{}' ({})", escape_for_message(name), escape_for_message(backing.path_of(name).string()));
}

Error ipc_error(const std::string& context, const bip::interprocess_exception& e) {
  const int err = e.get_native_error();
  if (e.get_error_code() == bip::already_exists_error || err == EEXIST) {
    return Error(Errc::exists, fmt::format("{}: already exists", context));
  }
  if (e.get_error_code() == bip::not_found_error || err == ENOENT) {
    return Error(Errc::bad_input, fmt::format("{}: does not exist", context));
  }
  return err != 0 ? system_error(context, err) : Error(Errc::system, fmt::format("{}: {}", context, e.what()));
}

// Opening an existing segment was refused by permissions or a read-only filesystem: the user
// can fix that (or only needed to read it), so it is bad input, not a system failure.
Error open_error(const std::string& context, int err, bool read_only) {
  if (err == EACCES || err == EPERM || err == EROFS) {
    return Error(Errc::bad_input, fmt::format("{}: cannot open for {}: {}", context,
                                              read_only ? "reading" : "reading and writing", std::strerror(err)));
  }
  return system_error(context, err);
}

// Refuses an existing entry that is not a plain file before opening it: shm_open follows no
// symlink (ELOOP) and reports a directory as EINVAL, and opening a FIFO read-only blocks. The
// fstat after opening stays the authoritative check; this makes the common cases bad input.
void check_entry_kind(const std::string& ctx, const Backing& backing, const std::string& name) {
  struct stat st {};
  if (::lstat(backing.path_of(name).c_str(), &st) != 0) return;  // absent: open reports it
  if (S_ISLNK(st.st_mode)) throw Error(Errc::bad_input, fmt::format("{}: is a symlink; refusing to follow it", ctx));
  if (!S_ISREG(st.st_mode)) throw Error(Errc::bad_input, fmt::format("{}: not a regular file", ctx));
}

OpenObject open_object(const std::string& name, const Backing& backing, bool create, bool read_only) {
  OpenObject obj;
  const std::string ctx = where(name, backing);
  // A descriptor (/proc/PID/fd/N) is a link by nature: opening it opens the object itself.
  if (!create && !backing.is_descriptors()) check_entry_kind(ctx, backing, name);
  if (backing.is_shm()) {
    try {
      if (create) {
        bip::permissions perms;
        perms.set_permissions(kSegmentMode);
        obj.shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perms);
      } else {
        // read_only: shm_open(O_RDONLY), so a segment this user may only read can be attached.
        obj.shm = bip::shared_memory_object(bip::open_only, name.c_str(), read_only ? bip::read_only : bip::read_write);
      }
    } catch (const bip::interprocess_exception& e) {
      if (!create && e.get_native_error() != 0 && e.get_native_error() != ENOENT) {
        throw open_error(ctx, e.get_native_error(), read_only);
      }
      throw ipc_error(ctx, e);
    }
    return obj;
  }
  const auto path = backing.path_of(name);
  const int flags = (create ? (O_RDWR | O_CREAT | O_EXCL) : (read_only ? O_RDONLY : O_RDWR)) |
                    (backing.is_descriptors() ? 0 : O_NOFOLLOW) | O_CLOEXEC;
  obj.fd = detail::UniqueFd(::open(path.c_str(), flags, kSegmentMode));
  if (!obj.fd) {
    const int err = errno;
    if (err == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", ctx));
    if (err == ENOENT) throw Error(Errc::bad_input, fmt::format("{}: does not exist", ctx));
    if (err == ELOOP) throw Error(Errc::bad_input, fmt::format("{}: is a symlink; refusing to follow it", ctx));
    if (!create) throw open_error(ctx, err, read_only);
    if (err == EACCES || err == EPERM || err == EROFS) {
      // A store this process may not write: bad input, as `run` says of an output directory.
      throw Error(Errc::bad_input, fmt::format("{}: cannot create it there: {} (expected a directory this process can write)",
                                               ctx, std::strerror(err)));
    }
    throw system_error(ctx, err);
  }
  // The umask may have narrowed the mode; make it exactly owner read/write.
  if (create && ::fchmod(obj.fd.get(), kSegmentMode) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw system_error(ctx + ": fchmod", err);
  }
  return obj;
}

// `label` names the mapping in a fault report ("segment 'x'", "file /data/a.npy").
std::shared_ptr<Mapping> map_object(OpenObject obj, std::size_t size, const MapOptions& options, std::string label,
                                    const std::string& ctx) {
  const auto mode = options.read_only ? bip::read_only : bip::read_write;
  const bip::map_options_t flags = options.populate ? MAP_POPULATE : bip::default_map_options;
  // mmap can fail (ENOMEM for a segment larger than the address space): report it as ours.
  try {
    bip::mapped_region region = obj.fd ? bip::mapped_region(FdMappable(obj.fd.get(), mode), mode, 0, size, nullptr, flags)
                                       : bip::mapped_region(obj.shm, mode, 0, size, nullptr, flags);
    return std::make_shared<RegionMapping>(std::move(obj), std::move(region), std::move(label), options.read_only);
  } catch (const bip::interprocess_exception& e) {
    throw ipc_error(ctx + ": mmap", e);
  }
}

SegmentIdentity identity_of(const struct stat& st) {
  return SegmentIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                         static_cast<std::uint64_t>(st.st_size)};
}

void unlink_name(const std::string& name, const Backing& backing) noexcept {
  if (backing.is_shm()) {
    bip::shared_memory_object::remove(name.c_str());
  } else {
    ::unlink(backing.path_of(name).c_str());
  }
}

// Removes a freshly created name unless dismissed: nothing is left behind when creation fails.
class CreateGuard {
 public:
  CreateGuard(const std::string& name, const Backing& backing) : name_(name), backing_(backing) {}
  CreateGuard(const CreateGuard&) = delete;
  CreateGuard& operator=(const CreateGuard&) = delete;
  ~CreateGuard() {
    if (armed_) unlink_name(name_, backing_);
  }
  void dismiss() noexcept { armed_ = false; }

 private:
  const std::string& name_;
  const Backing& backing_;
  bool armed_ = true;
};

// The entry under a name, checked as a segment this user may `act_on` ("remove", "move or
// replace"): a regular file of this uid. Returns false if there is none.
bool stat_own_segment(std::string_view name, const Backing& backing, struct stat& st, std::string_view act_on) {
  if (::lstat(backing.path_of(name).c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw system_error(where(name, backing), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::bad_input, fmt::format("{}: not a regular file; refusing to {} it", where(name, backing), act_on));
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(Errc::bad_input, fmt::format("{}: owned by uid {}, not by this user; refusing to {} it", where(name, backing),
                                             st.st_uid, act_on));
  }
  return true;
}

// The errors that mean "the store is full": posix_fallocate's and write's alike.
bool is_no_space(int err) noexcept { return err == ENOSPC || err == EFBIG || err == EDQUOT; }

// "<what>: not enough space: needs N bytes in DIR".
Error no_space_error(const std::string& what, std::uint64_t bytes, const std::filesystem::path& dir) {
  return Error(Errc::no_space, fmt::format("{}: not enough space: needs {} bytes in {}", what, bytes,
                                           escape_for_message(dir.string())));
}

}  // namespace

std::string to_string(const SegmentIdentity& identity) {
  const auto dev = static_cast<dev_t>(identity.device);
  return fmt::format("device {}:{}, inode {}, {} bytes", major(dev), minor(dev), identity.inode, identity.size);
}

std::ostream& operator<<(std::ostream& out, const SegmentIdentity& identity) { return out << to_string(identity); }

Segment::Segment(std::string name, Backing backing, std::shared_ptr<Mapping> mapping, SegmentIdentity identity,
                 bool read_only, bool owns)
    : name_(std::move(name)),
      backing_(std::move(backing)),
      mapping_(std::move(mapping)),
      identity_(identity),
      read_only_(read_only),
      owns_name_(owns) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      backing_(std::move(other.backing_)),
      mapping_(std::move(other.mapping_)),
      identity_(other.identity_),
      read_only_(other.read_only_),
      owns_name_(std::exchange(other.owns_name_, false)),
      pending_(std::move(other.pending_)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    remove_name();
    name_ = std::move(other.name_);
    backing_ = std::move(other.backing_);
    mapping_ = std::move(other.mapping_);
    identity_ = other.identity_;
    read_only_ = other.read_only_;
    owns_name_ = std::exchange(other.owns_name_, false);
    pending_ = std::move(other.pending_);
  }
  return *this;
}

Segment::~Segment() { remove_name(); }

void Segment::remove_name() noexcept {
  // Only if the name still holds this handle's object: another object that took the name
  // after ours was removed (by `rm` or by hand) is not ours to remove.
  struct stat st {};
  if (backing_.is_descriptors()) {
    // An unnamed file has nothing to remove; a hidden temporary goes with its PendingFile.
    if (owns_name_) pending_.reset();
    owns_name_ = false;
    return;
  }
  if (owns_name_ && ::lstat(backing_.path_of(name_).c_str(), &st) == 0 &&
      static_cast<std::uint64_t>(st.st_dev) == identity_.device && static_cast<std::uint64_t>(st.st_ino) == identity_.inode) {
    unlink_name(name_, backing_);
  }
  owns_name_ = false;
}

void Segment::publish(std::string to, bool replace) {
  if (!owns_name_) {
    throw Error(Errc::usage, fmt::format("{}: only the segment's creator can publish it", where(name_, backing_)));
  }
  publish_segment(name_, to, backing_, replace, identity_);
  name_ = std::move(to);
  owns_name_ = false;
}

std::optional<SegmentIdentity> mapped_object_at(const void* address) {
  std::ifstream maps("/proc/self/maps");
  const auto at = reinterpret_cast<std::uintptr_t>(address);
  std::string line;
  while (std::getline(maps, line)) {
    // "7f1bc795d000-7f1bc795f000 r--s 00000000 fe:00 10953020   /tmp/m.npy"
    unsigned long lo = 0, hi = 0, offset = 0, inode = 0;
    unsigned major = 0, minor = 0;
    std::array<char, 5> perms{};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %lx %x:%x %lu", &lo, &hi, perms.data(), &offset, &major, &minor, &inode) != 7) {
      continue;
    }
    if (at < lo || at >= hi) continue;
    if (inode == 0) return std::nullopt;  // anonymous memory
    return SegmentIdentity{static_cast<std::uint64_t>(makedev(major, minor)), static_cast<std::uint64_t>(inode), 0};
  }
  return std::nullopt;
}

Segment Segment::create(std::string name, std::size_t size, const Backing& backing, MapOptions options) {
  validate_segment_name(name);
  TILEPOOL_CHECK(size > 0);
  TILEPOOL_CHECK(!options.read_only && !options.expected_identity);
  OpenObject obj = open_object(name, backing, /*create=*/true, /*read_only=*/false);
  CreateGuard guard(name, backing);
  std::vector<ByteRange> reserve{ByteRange{0, size}};
  if (options.reserve_only || !options.reserve) {
    // Sized, not reserved: sparse, with only the ranges that will be written reserved, or none
    // at all for a caller that fills every byte with copy_from (which reports a full store).
    if (::ftruncate(obj.native(), static_cast<off_t>(size)) != 0) throw system_error(where(name, backing) + ": ftruncate", errno);
    reserve = options.reserve_only ? merge_ranges(*options.reserve_only) : std::vector<ByteRange>{};
    if (options.reserve_only) options.populate = false;
  }
  for (const ByteRange& r : reserve) {
    TILEPOOL_CHECK(r.offset + r.length <= size);
    if (const int err = detail::reserve_range(obj.native(), r.offset, r.length); err != 0) {
      // A caller that fills every byte (reserve false) needs the whole size, not the ranges.
      const std::uint64_t needed = options.reserve ? covered_bytes(reserve) : size;
      if (is_no_space(err)) throw no_space_error(where(name, backing), needed, backing.directory());
      throw system_error(where(name, backing) + ": posix_fallocate", err);
    }
  }
  struct stat st {};
  if (::fstat(obj.native(), &st) != 0) throw system_error(where(name, backing) + ": fstat", errno);
  auto mapping = map_object(std::move(obj), size, options, fmt::format("segment '{}'", name), where(name, backing));
  guard.dismiss();
  return Segment(std::move(name), backing, std::move(mapping), identity_of(st), /*read_only=*/false, /*owns=*/true);
}

Segment Segment::attach(std::string name, const Backing& backing, MapOptions options, std::size_t min_size) {
  validate_segment_name(name);
  const std::string ctx = where(name, backing);
  const auto& expected = options.expected_identity;
  struct stat st {};
  if (expected && ::lstat(backing.path_of(name).c_str(), &st) != 0 && errno == ENOENT) {
    throw Error(Errc::bad_input, fmt::format("segment '{}' was removed since the job started: {} does not exist", name,
                                             escape_for_message(backing.path_of(name).string())));
  }
  const std::string subject = backing.is_descriptors() ? ctx : fmt::format("segment '{}'", name);
  OpenObject obj = open_object(name, backing, /*create=*/false, options.read_only);
  if (::fstat(obj.native(), &st) != 0) throw system_error(ctx + ": fstat", errno);
  if (!S_ISREG(st.st_mode)) throw Error(Errc::bad_input, fmt::format("{}: not a regular file", ctx));
  // A descriptor of another process of ours names the object that process opened for its
  // user (an input file may belong to anyone who let us read it).
  if (st.st_uid != ::geteuid() && !backing.is_descriptors()) {
    throw Error(Errc::bad_input,
                fmt::format("{}: owned by uid {}, not by this user (uid {})", ctx, st.st_uid, ::geteuid()));
  }
  const SegmentIdentity found = identity_of(st);
  if (expected && found != *expected) {
    throw Error(Errc::bad_input, fmt::format("{} was replaced or resized since the job started: it was {}, "
                                             "{} now holds {}",
                                             subject, to_string(*expected),
                                             escape_for_message(backing.path_of(name).string()), to_string(found)));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0 || size < min_size) {
    throw Error(Errc::bad_input, fmt::format("{}: too small: {} bytes, expected at least {}", ctx, size,
                                             std::max<std::size_t>(min_size, 1)));
  }
  // Pre-faulting a sparse object would allocate its holes (a read fault on tmpfs allocates).
  if (static_cast<std::uint64_t>(st.st_blocks) * 512 < static_cast<std::uint64_t>(st.st_size)) options.populate = false;
  auto mapping = map_object(std::move(obj), size, options, subject, ctx);
  return Segment(std::move(name), backing, std::move(mapping), found, options.read_only, /*owns=*/false);
}

void Segment::copy_from(int source, std::uint64_t source_offset, std::size_t offset, std::size_t length) {
  TILEPOOL_CHECK(offset <= size() && length <= size() - offset && !read_only_);
  // The mapping keeps the object's descriptor: write through a descriptor of our own.
  const std::string ctx = where(name_, backing_);
  detail::UniqueFd dest(::open(backing_.path_of(name_).c_str(), O_WRONLY | O_CLOEXEC | (backing_.is_descriptors() ? 0 : O_NOFOLLOW)));
  if (!dest) throw system_error(ctx + ": open for writing", errno);
  auto in = static_cast<off_t>(source_offset);
  auto out = static_cast<off_t>(offset);
  bool use_sendfile = false;
  std::size_t left = length;
  while (left > 0) {
    // A piece at a time, looking at the user's stop between (a GiB takes a second or more).
    throw_if_interrupted();
    const std::size_t piece = std::min(left, kStopCheckBytes);
    ssize_t n = -1;
    if (!use_sendfile) {
      n = ::copy_file_range(source, &in, dest.get(), &out, piece, 0);
      // Across filesystems (a disk file into tmpfs) the kernel says EXDEV: sendfile copies there.
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        use_sendfile = true;
        if (::lseek(dest.get(), out, SEEK_SET) < 0) throw system_error(ctx + ": lseek", errno);
        continue;
      }
    } else {
      n = ::sendfile(dest.get(), source, &in, piece);
      if (n > 0) out += n;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && is_no_space(errno)) throw no_space_error(ctx, size(), backing_.directory());
    if (n < 0) throw system_error(ctx + ": copying data in", errno);
    if (n == 0) throw Error(Errc::bad_input, fmt::format("{}: the source file ended {} bytes early", ctx, left));
    left -= static_cast<std::size_t>(n);
  }
}

Segment Segment::open_file(const std::filesystem::path& path, MapOptions options) {
  const std::string ctx = escape_for_message(path.string());
  TILEPOOL_CHECK(!options.expected_identity);
  OpenObject obj;
  obj.fd = detail::UniqueFd(::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!obj.fd) {
    const int err = errno;
    if (err == ENOENT) throw Error(Errc::bad_input, fmt::format("{}: does not exist", ctx));
    throw open_error(ctx, err, options.read_only);
  }
  struct stat st {};
  if (::fstat(obj.fd.get(), &st) != 0) throw system_error(ctx + ": fstat", errno);
  if (!S_ISREG(st.st_mode)) throw Error(Errc::bad_input, fmt::format("{}: not a regular file", ctx));
  if (st.st_size == 0) throw Error(Errc::bad_input, fmt::format("{}: empty file", ctx));
  const int fd = obj.fd.get();
  auto mapping = map_object(std::move(obj), static_cast<std::size_t>(st.st_size), options, fmt::format("file {}", ctx), ctx);
  return Segment(std::to_string(fd), Backing::descriptors_of(::getpid()), std::move(mapping), identity_of(st),
                 options.read_only, /*owns=*/false);
}

Segment Segment::create_pending_file(const std::filesystem::path& target, std::size_t size, const PublishOptions& publish,
                                     MapOptions options) {
  TILEPOOL_CHECK(size > 0);
  TILEPOOL_CHECK(!options.read_only && !options.expected_identity);
  const std::string ctx = escape_for_message(target.string());
  auto pending = std::make_unique<PendingFile>(PendingFile::create(target, publish));
  pending->allocate(size);
  // The mapping keeps a descriptor of its own, which also names the segment for other
  // processes (/proc/PID/fd/N): the PendingFile's goes when it is published.
  OpenObject obj;
  obj.fd = detail::UniqueFd(::fcntl(pending->fd(), F_DUPFD_CLOEXEC, 0));
  if (!obj.fd) throw system_error(ctx + ": dup", errno);
  struct stat st {};
  if (::fstat(obj.fd.get(), &st) != 0) throw system_error(ctx + ": fstat", errno);
  const int fd = obj.fd.get();
  auto mapping = map_object(std::move(obj), size, options, fmt::format("file {}", ctx), ctx);
  Segment segment(std::to_string(fd), Backing::descriptors_of(::getpid()), std::move(mapping), identity_of(st),
                  /*read_only=*/false, /*owns=*/true);
  segment.pending_ = std::move(pending);
  return segment;
}

namespace {

// sync_before_publishing of segment `name` in a store that is a directory (on a FUSE or network
// mount, say); tmpfs has nothing to write back.
void sync_segment_data(std::string_view name, const Backing& backing) {
  if (backing.is_shm()) return;
  const detail::UniqueFd fd(::open(backing.path_of(name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw system_error(fmt::format("{}: opening it to sync its data", where(name, backing)), errno);
  sync_before_publishing(fd.get(), where(name, backing));
}

}  // namespace

void Segment::sync_data() const {
  if (pending_) return sync_before_publishing(pending_->fd(), where(name_, backing_));
  sync_segment_data(name_, backing_);
}

void Segment::publish_file(bool replace) {
  TILEPOOL_CHECK(backing_.is_descriptors() && owns_name_ && pending_);
  pending_->publish(replace);
  // Published: the descriptor and temporary bookkeeping go; the file is the user's.
  pending_.reset();
  owns_name_ = false;
}

bool segment_removable(std::string_view name, const Backing& backing) {
  validate_segment_name(name);
  struct stat st {};
  return stat_own_segment(name, backing, st, "remove");
}

bool remove_segment(std::string_view name, const Backing& backing) {
  if (!segment_removable(name, backing)) return false;
  unlink_name(std::string(name), backing);
  return true;
}

bool segment_exists(std::string_view name, const Backing& backing) {
  validate_segment_name(name);
  struct stat st {};
  return ::lstat(backing.path_of(name).c_str(), &st) == 0;
}

void publish_segment(std::string_view from, std::string_view to, const Backing& backing, bool replace,
                     std::optional<SegmentIdentity> expected) {
  validate_segment_name(from);
  validate_segment_name(to);
  struct stat st {};
  if (!stat_own_segment(from, backing, st, "move or replace")) {
    throw Error(Errc::bad_input, fmt::format("{}: does not exist; nothing to publish", where(from, backing)));
  }
  if (expected && identity_of(st) != *expected) {
    throw Error(Errc::bad_input,
                fmt::format("segment '{}' was replaced or resized before it was published: it was {}, now {}", from,
                            to_string(*expected), to_string(identity_of(st))));
  }
  if (from == to) return;
  sync_segment_data(from, backing);  // what the store failed to write back fails the publication
  if (replace) {
    struct stat old {};
    (void)stat_own_segment(to, backing, old, "move or replace");  // refuses a directory, symlink or another user's file
  }
  publish_path(backing.path_of(from), backing.path_of(to), replace, where(from, backing), where(to, backing));
}

}  // namespace tilepool
