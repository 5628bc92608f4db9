#include "tilepool/shared/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"

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

class RegionMapping final : public Mapping {
 public:
  explicit RegionMapping(bip::mapped_region region) : region_(std::move(region)) {}
  std::byte* data() const noexcept override { return static_cast<std::byte*>(region_.get_address()); }
  std::size_t size() const noexcept override { return region_.get_size(); }

 private:
  bip::mapped_region region_;
};

// An open segment object: a descriptor (owned by the Boost object or by us) and where it is.
struct OpenObject {
  bip::shared_memory_object shm;  // used for shm backing
  detail::UniqueFd fd;            // used for file backing
  [[nodiscard]] int native() const noexcept { return fd ? fd.get() : shm.get_mapping_handle().handle; }
};

std::string where(std::string_view name, const Backing& backing) {
  return "segment '" + std::string(name) + "' (" + backing.path_of(name).string() + ")";
}

Error ipc_error(const std::string& context, const bip::interprocess_exception& e) {
  const int err = e.get_native_error();
  if (e.get_error_code() == bip::already_exists_error || err == EEXIST) {
    return Error(Errc::exists, context + ": already exists");
  }
  if (e.get_error_code() == bip::not_found_error || err == ENOENT) {
    return Error(Errc::bad_input, context + ": does not exist");
  }
  return err != 0 ? system_error(context, err) : Error(Errc::system, context + ": " + e.what());
}

// Refuses an existing entry that is not a plain file before opening it: shm_open follows no
// symlink (ELOOP) and reports a directory as EINVAL, and opening a FIFO read-only blocks. The
// fstat after opening stays the authoritative check; this makes the common cases bad input.
void check_entry_kind(const std::string& ctx, const Backing& backing, const std::string& name) {
  struct stat st {};
  if (::lstat(backing.path_of(name).c_str(), &st) != 0) return;  // absent: open reports it
  if (S_ISLNK(st.st_mode)) throw Error(Errc::bad_input, ctx + ": is a symlink; refusing to follow it");
  if (!S_ISREG(st.st_mode)) throw Error(Errc::bad_input, ctx + ": not a regular file");
}

OpenObject open_object(const std::string& name, const Backing& backing, bool create, bool read_only) {
  OpenObject obj;
  const std::string ctx = where(name, backing);
  if (!create) check_entry_kind(ctx, backing, name);
  if (backing.is_shm()) {
    try {
      if (create) {
        bip::permissions perms;
        perms.set_permissions(kSegmentMode);
        obj.shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, perms);
      } else {
        obj.shm = bip::shared_memory_object(bip::open_only, name.c_str(), read_only ? bip::read_only : bip::read_write);
      }
    } catch (const bip::interprocess_exception& e) {
      throw ipc_error(ctx, e);
    }
    return obj;
  }
  const auto path = backing.path_of(name);
  const int flags = (create ? (O_RDWR | O_CREAT | O_EXCL) : (read_only ? O_RDONLY : O_RDWR)) | O_NOFOLLOW | O_CLOEXEC;
  obj.fd = detail::UniqueFd(::open(path.c_str(), flags, kSegmentMode));
  if (!obj.fd) {
    const int err = errno;
    if (err == EEXIST) throw Error(Errc::exists, ctx + ": already exists");
    if (err == ENOENT) throw Error(Errc::bad_input, ctx + ": does not exist");
    if (err == ELOOP) throw Error(Errc::bad_input, ctx + ": is a symlink; refusing to follow it");
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

std::shared_ptr<Mapping> map_object(const OpenObject& obj, std::size_t size, MapOptions options, const std::string& ctx) {
  const auto mode = options.read_only ? bip::read_only : bip::read_write;
  const bip::map_options_t flags = options.populate ? MAP_POPULATE : bip::default_map_options;
  // mmap can fail (ENOMEM for a segment larger than the address space): report it as ours.
  try {
    if (obj.fd) {
      return std::make_shared<RegionMapping>(bip::mapped_region(FdMappable(obj.fd.get(), mode), mode, 0, size, nullptr, flags));
    }
    return std::make_shared<RegionMapping>(bip::mapped_region(obj.shm, mode, 0, size, nullptr, flags));
  } catch (const bip::interprocess_exception& e) {
    throw ipc_error(ctx + ": mmap", e);
  }
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

}  // namespace

Segment::Segment(std::string name, Backing backing, std::shared_ptr<Mapping> mapping, bool owns)
    : name_(std::move(name)), backing_(std::move(backing)), mapping_(std::move(mapping)), owns_name_(owns) {}

Segment::Segment(Segment&& other) noexcept
    : name_(std::move(other.name_)),
      backing_(std::move(other.backing_)),
      mapping_(std::move(other.mapping_)),
      owns_name_(std::exchange(other.owns_name_, false)) {}

Segment& Segment::operator=(Segment&& other) noexcept {
  if (this != &other) {
    remove_name();
    name_ = std::move(other.name_);
    backing_ = std::move(other.backing_);
    mapping_ = std::move(other.mapping_);
    owns_name_ = std::exchange(other.owns_name_, false);
  }
  return *this;
}

Segment::~Segment() { remove_name(); }

void Segment::remove_name() noexcept {
  if (owns_name_) unlink_name(name_, backing_);
  owns_name_ = false;
}

Segment Segment::create(std::string name, std::size_t size, const Backing& backing, MapOptions options) {
  validate_segment_name(name);
  TILEPOOL_CHECK(size > 0);
  OpenObject obj = open_object(name, backing, /*create=*/true, /*read_only=*/false);
  CreateGuard guard(name, backing);
  if (const int err = ::posix_fallocate(obj.native(), 0, static_cast<off_t>(size)); err != 0) {
    if (err == ENOSPC || err == EFBIG || err == EDQUOT) {
      throw Error(Errc::no_space, where(name, backing) + ": not enough space: needs " + std::to_string(size) +
                                      " bytes in " + backing.directory().string() +
                                      " (make room, or use --backing file:DIR on a larger filesystem)");
    }
    throw system_error(where(name, backing) + ": posix_fallocate", err);
  }
  auto mapping = map_object(obj, size, options, where(name, backing));
  guard.dismiss();
  return Segment(std::move(name), backing, std::move(mapping), /*owns=*/true);
}

Segment Segment::attach(std::string name, const Backing& backing, MapOptions options, std::size_t min_size) {
  validate_segment_name(name);
  const std::string ctx = where(name, backing);
  OpenObject obj = open_object(name, backing, /*create=*/false, options.read_only);
  struct stat st {};
  if (::fstat(obj.native(), &st) != 0) throw system_error(ctx + ": fstat", errno);
  if (!S_ISREG(st.st_mode)) throw Error(Errc::bad_input, ctx + ": not a regular file");
  if (st.st_uid != ::geteuid()) {
    throw Error(Errc::bad_input, ctx + ": owned by uid " + std::to_string(st.st_uid) + ", not by this user (uid " +
                                     std::to_string(::geteuid()) + ")");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0 || size < min_size) {
    throw Error(Errc::bad_input, ctx + ": too small: " + std::to_string(size) + " bytes, expected at least " +
                                     std::to_string(std::max<std::size_t>(min_size, 1)));
  }
  return Segment(std::move(name), backing, map_object(obj, size, options, ctx), /*owns=*/false);
}

bool remove_segment(std::string_view name, const Backing& backing) {
  validate_segment_name(name);
  const auto path = backing.path_of(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw system_error(where(name, backing), errno);
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(Errc::bad_input, where(name, backing) + ": not a regular file; refusing to remove it");
  }
  if (st.st_uid != ::geteuid()) {
    throw Error(Errc::bad_input, where(name, backing) + ": owned by uid " + std::to_string(st.st_uid) +
                                     "; refusing to remove it");
  }
  unlink_name(std::string(name), backing);
  return true;
}

bool segment_exists(std::string_view name, const Backing& backing) {
  validate_segment_name(name);
  struct stat st {};
  return ::lstat(backing.path_of(name).c_str(), &st) == 0;
}

}  // namespace tilepool
