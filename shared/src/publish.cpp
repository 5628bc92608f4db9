#include "tilepool/shared/publish.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <random>
#include <string_view>
#include <utility>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/posix_call.hpp"

namespace tilepool {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kMarker = ".tilepool-";
constexpr std::string_view kSuffix = ".tmp";
constexpr std::size_t kRandomDigits = 16;
// A long output name is shortened in its temporary's name, so the latter stays under NAME_MAX.
constexpr std::size_t kMaxNameInTemporary = 96;

std::string quoted(const fs::path& path) { return escape_for_message(path.string()); }

fs::path directory_of(const fs::path& target) {
  fs::path dir = target.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// This host's name as it appears in temporaries' names: only [A-Za-z0-9._-], the rest '_'.
const std::string& host_in_names() {
  static const std::string host = [] {
    char buffer[256] = {};
    if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return std::string("localhost");
    std::string h(buffer);
    if (h.size() > 64) h.resize(64);
    for (char& c : h) {
      const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
      if (!plain) c = '_';
    }
    return h;
  }();
  return host;
}

// renameat2(RENAME_NOREPLACE) through the system call (glibc 2.28+ has a wrapper, older ones
// do not, and the number is the same either way). Returns 0 or an errno value.
int rename_noreplace(const char* from, const char* to) noexcept {
#if defined(SYS_renameat2)
#if defined(RENAME_NOREPLACE)
  constexpr unsigned kNoReplace = RENAME_NOREPLACE;
#else
  constexpr unsigned kNoReplace = 1U;
#endif
  if (::syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, kNoReplace) == 0) return 0;
  return errno;
#else
  (void)from, (void)to;
  return ENOSYS;
#endif
}

// The errors by which a filesystem says it lacks an operation (rather than refusing this file).
bool is_unsupported(int err) noexcept { return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP || err == ENOTSUP; }
// link(2) also says EPERM where the filesystem does not do hard links (FAT, some FUSE mounts).
bool link_unsupported(int err) noexcept { return is_unsupported(err) || err == EPERM || err == EMLINK; }

bool is_no_space(int err) noexcept { return err == ENOSPC || err == EFBIG || err == EDQUOT; }

// Opening a file in `dir` (for `target`, if given) failed with `err`: the user can fix a
// missing or unwritable directory.
Error create_error(const fs::path& dir, int err, const fs::path& target = {}) {
  const std::string subject = target.empty() ? fmt::format("{}: cannot create a file there", quoted(dir))
                                             : fmt::format("{}: cannot create a file in {}", quoted(target), quoted(dir));
  if (err == EACCES || err == EPERM || err == EROFS || err == ENOENT || err == ENOTDIR) {
    return Error(Errc::bad_input, fmt::format("{}: {}", subject, std::strerror(err)));
  }
  return system_error(subject, err);
}

// A new hidden temporary in `dir` for `for_name`, opened O_EXCL (a fresh name on a collision).
detail::UniqueFd create_hidden(const fs::path& dir, const std::string& for_name, fs::path& path) {
  for (int attempt = 0;; ++attempt) {
    path = hidden_temporary_path(dir, for_name);
    detail::UniqueFd fd(
        retry_on_eintr([&] { return ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666); }));
    if (fd || errno != EEXIST || attempt == 8) {
      if (!fd) path.clear();
      return fd;
    }
  }
}

// Tries RENAME_NOREPLACE, then link(2), on the named file at `path` (its name may change:
// renaming it to a fresh name is the test). Fills `found`.
void probe_named(fs::path& path, const fs::path& dir, const std::string& for_name, const FileSystemFeatures& allowed,
                 FileSystemFeatures& found) {
  if (allowed.rename_noreplace) {
    const fs::path renamed = hidden_temporary_path(dir, for_name);
    const int err = rename_noreplace(path.c_str(), renamed.c_str());
    if (err == 0) {
      path = renamed;
      found.rename_noreplace = true;
    } else if (!is_unsupported(err)) {
      throw system_error(fmt::format("{}: renaming a file there", quoted(dir)), err);
    }
  }
  if (allowed.hard_links) {
    const fs::path link = hidden_temporary_path(dir, for_name);
    if (::link(path.c_str(), link.c_str()) == 0) {
      ::unlink(link.c_str());
      found.hard_links = true;
    } else if (!link_unsupported(errno)) {
      throw system_error(fmt::format("{}: linking a file there", quoted(dir)), errno);
    }
  }
}

// Whether an O_TMPFILE file in `dir` can be given a name: linkat of a throwaway one.
bool unnamed_files_link(const fs::path& dir) {
  detail::UniqueFd probe(::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!probe) return false;
  const fs::path name = hidden_temporary_path(dir, "tilepool-probe");
  const std::string self = fmt::format("/proc/self/fd/{}", probe.get());
  if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) != 0) return false;
  ::unlink(name.c_str());
  return true;
}

// Without `subject`, the message starts at "the filesystem of": the caller names the target.
Error cannot_publish_error(const fs::path& target, bool subject = true, std::string_view remedy = kReplaceRemedy) {
  return Error(Errc::bad_input,
               fmt::format("{}the filesystem of {} can neither rename without replacing (RENAME_NOREPLACE) nor make "
                           "hard links, so nothing can be published there without risking replacing what appears "
                           "meanwhile; {}",
                           subject ? quoted(target) + ": " : "", quoted(directory_of(target)), remedy));
}

// "OUT is a directory, device, FIFO or socket": never replaced.
void refuse_replacing_special(const fs::path& target) {
  struct stat old {};
  if (::lstat(target.c_str(), &old) == 0 && !S_ISREG(old.st_mode) && !S_ISLNK(old.st_mode)) {
    throw Error(Errc::bad_input, fmt::format("{}: exists and is not a regular file; refusing to replace it", quoted(target)));
  }
}

}  // namespace

fs::path hidden_temporary_path(const fs::path& dir, const std::string& for_name, const ProcessOwner& owner) {
  // 64 random bits from the kernel (no thread_local engine: 2.5 KiB of thread-local storage
  // would not fit the static TLS reserve that a library loaded late, by python3, gets).
  std::uint64_t random = 0;
  if (::getrandom(&random, sizeof random, 0) != static_cast<ssize_t>(sizeof random)) {
    random = static_cast<std::uint64_t>(std::random_device{}()) << 32 | std::random_device{}();
  }
  std::string name = for_name.size() > kMaxNameInTemporary ? for_name.substr(0, kMaxNameInTemporary) : for_name;
  return dir / fmt::format(".{}{}{}-{}-{}-{:016x}{}", name, kMarker, host_in_names(), owner.pid, owner.start_time,
                           random, kSuffix);
}

std::optional<ProcessOwner> parse_hidden_temporary_name(const std::string& file_name) {
  std::string_view rest(file_name);
  if (!rest.starts_with('.') || !rest.ends_with(kSuffix)) return std::nullopt;
  rest.remove_suffix(kSuffix.size());
  // From the right: -PID-START-RANDOM; the output's name, left of them, may hold anything.
  if (rest.size() < kRandomDigits + 1 || rest[rest.size() - kRandomDigits - 1] != '-') return std::nullopt;
  if (rest.substr(rest.size() - kRandomDigits).find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return std::nullopt;
  }
  rest.remove_suffix(kRandomDigits + 1);
  const auto number = [&rest](auto& out) {
    const auto dash = rest.rfind('-');
    if (dash == std::string_view::npos || dash + 1 == rest.size()) return false;
    const char* first = rest.data() + dash + 1;
    const char* last = rest.data() + rest.size();
    const auto [ptr, ec] = std::from_chars(first, last, out);
    if (ec != std::errc() || ptr != last || *first == '+' || *first == '-') return false;
    rest.remove_suffix(rest.size() - dash);
    return true;
  };
  ProcessOwner owner;
  if (!number(owner.start_time) || !number(owner.pid) || owner.pid <= 0) return std::nullopt;
  const std::string here = fmt::format("{}{}", kMarker, host_in_names());
  if (!rest.ends_with(here) || rest.size() <= here.size() + 1) return std::nullopt;
  return owner;
}

namespace {

// The owner of a hidden temporary, or of a lock file named after one: the temporary's name
// followed by "-N-N.lock", which Open MPI's "lockedfile" MPI-IO component makes beside a file
// it opens (FILE-JOBID-PID.lock) and leaves when its job is killed. The lock is the
// temporary's: it goes when the temporary's owner is dead, whoever made it.
std::optional<ProcessOwner> leftover_owner(const std::string& name) {
  if (auto owner = parse_hidden_temporary_name(name)) return owner;
  constexpr std::string_view kLock = ".lock";
  std::string_view rest(name);
  if (!rest.ends_with(kLock)) return std::nullopt;
  rest.remove_suffix(kLock.size());
  for (int field = 0; field < 2; ++field) {
    const auto dash = rest.rfind('-');
    if (dash == std::string_view::npos || dash + 1 == rest.size() ||
        rest.substr(dash + 1).find_first_not_of("0123456789") != std::string_view::npos) {
      return std::nullopt;
    }
    rest.remove_suffix(rest.size() - dash);
  }
  return parse_hidden_temporary_name(std::string(rest));
}

}  // namespace

std::size_t remove_stale_file_temporaries(const fs::path& dir) noexcept {
  std::size_t removed = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    try {
      const std::string name = it->path().filename().string();
      const auto owner = leftover_owner(name);
      if (!owner || owner_alive(*owner)) continue;
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) continue;
      if (::unlink(it->path().c_str()) == 0) ++removed;
    } catch (...) {  // NOLINT(bugprone-empty-catch): an allocation failure skips one entry
    }
  }
  return removed;
}

namespace {

// The directory that is to hold a new name, opened before the name is made and synced after:
// a process that cannot open it (out of descriptors) fails before it publishes anything.
// Before, `tilepool get` at `ulimit -n 5` published its file and then failed, exit 2.
detail::UniqueFd open_directory_to_sync(const fs::path& dir) {
  detail::UniqueFd fd(retry_on_eintr([&] { return ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); }));
  if (!fd) throw system_error(fmt::format("{}: opening the directory to sync it", quoted(dir)), errno);
  return fd;
}

void sync_open_directory(const detail::UniqueFd& fd, const fs::path& dir) {
  if (retry_on_eintr([&] { return ::fsync(fd.get()); }) != 0 && errno != EINVAL && errno != EROFS && errno != EBADF) {
    throw system_error(fmt::format("{}: syncing the directory", quoted(dir)), errno);
  }
}

}  // namespace

void sync_directory(const fs::path& dir) { sync_open_directory(open_directory_to_sync(dir), dir); }

void publish_path(const fs::path& from, const fs::path& to, bool replace, const std::string& what_from,
                  const std::string& what_to) {
  const auto failed = [&](int err) { return system_error(fmt::format("publishing {} as {}", what_from, what_to), err); };
  const fs::path dir = directory_of(to);
  const detail::UniqueFd dir_fd = open_directory_to_sync(dir);
  if (replace) {
    if (::rename(from.c_str(), to.c_str()) != 0) throw failed(errno);
  } else {
    const int err = rename_noreplace(from.c_str(), to.c_str());
    if (err == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", what_to));
    if (err != 0 && !is_unsupported(err)) throw failed(err);
    if (err != 0) {
      // No rename without replacing here: link(2) never replaces either, and readers of `to`
      // see the whole object from the start; then the old name goes.
      if (::link(from.c_str(), to.c_str()) != 0) {
        if (errno == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", what_to));
        throw failed(errno);
      }
      ::unlink(from.c_str());
    }
  }
  sync_open_directory(dir_fd, dir);
}

namespace {

// RENAME_NOREPLACE and hard links in `dir`, tried on a throwaway named file (removed); errors
// about creating it name `target` if given.
FileSystemFeatures probe_named_features(const fs::path& dir, const fs::path& target = {}) {
  FileSystemFeatures found{false, false, false};
  fs::path path;
  detail::UniqueFd fd = create_hidden(dir, "tilepool-probe", path);
  if (!fd) throw create_error(dir, errno, target);
  try {
    probe_named(path, dir, "tilepool-probe", FileSystemFeatures{}, found);
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
  ::unlink(path.c_str());
  return found;
}

}  // namespace

FileSystemFeatures probe_directory(const fs::path& dir) {
  FileSystemFeatures found = probe_named_features(dir);
  found.unnamed_files = unnamed_files_link(dir);
  return found;
}

namespace {

// Whether a filesystem (statfs's f_type) is local and its page cache its own: a write it took is
// kept (no server to lose it), and it renames without replacing. The magic numbers of
// <linux/magic.h>: tmpfs, ramfs, ext2/3/4, XFS, Btrfs, F2FS, overlayfs.
bool is_local_filesystem(const struct statfs& fs) noexcept {
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0x01021994UL: case 0x858458f6UL: case 0xEF53UL: case 0x58465342UL: case 0x9123683EUL: case 0xF2F52010UL:
    case 0x794c7630UL:
      return true;
    default:
      return false;
  }
}

}  // namespace

void sync_before_publishing(int fd, const std::string& what) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) == 0 && is_local_filesystem(fs)) return;
  if (retry_on_eintr([&] { return ::fdatasync(fd); }) != 0 && errno != EINVAL && errno != EROFS) {
    const int err = errno;
    if (is_no_space(err)) {
      throw Error(Errc::no_space, fmt::format("{}: writing its data: {} (the filesystem is full)", what, std::strerror(err)), err);
    }
    throw system_error(fmt::format("{}: writing its data", what), err);
  }
}

void check_publishable(const fs::path& target, bool replace, std::string_view remedy) {
  if (replace) return;
  const fs::path dir = directory_of(target);
  // Tried each time on what is mounted there now (no cache: a device number is reused after an
  // unmount), except on the local filesystems, which all rename without replacing.
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) throw create_error(dir, errno, target);
  if (is_local_filesystem(st)) return;
  const FileSystemFeatures found = probe_named_features(dir, target);
  if (!found.rename_noreplace && !found.hard_links) throw cannot_publish_error(target, /*subject=*/false, remedy);
}

PendingFile PendingFile::create(fs::path target, const PublishOptions& options) {
  PendingFile file;
  file.target_ = std::move(target);
  file.replace_ = options.replace;
  const fs::path dir = directory_of(file.target_);
  const std::string for_name = file.target_.filename().string();
  const FileSystemFeatures& allowed = options.allowed;
  if (options.temporary == TemporaryKind::unnamed && allowed.unnamed_files && allowed.hard_links) {
    // Mode 0666 less the umask, as any file the user writes. Where O_TMPFILE is missing the
    // kernel or filesystem says EOPNOTSUPP, EISDIR (kernels before 3.11) or EINVAL.
    detail::UniqueFd fd(retry_on_eintr([&] { return ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0666); }));
    if (!fd && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) throw create_error(dir, errno, file.target_);
    // An unnamed file is published by linking it: it needs hard links too (a throwaway file
    // tells, since a file linked once cannot be linked again after its name is removed).
    if (fd && unnamed_files_link(dir)) {
      file.features_ = FileSystemFeatures{true, false, true};
      file.fd_ = std::move(fd);
      return file;
    }
  }
  detail::UniqueFd fd = create_hidden(dir, for_name, file.temporary_);
  if (!fd) throw create_error(dir, errno, file.target_);
  file.fd_ = std::move(fd);  // from here on, the destructor removes the temporary
  probe_named(file.temporary_, dir, for_name, allowed, file.features_);
  if (!options.replace && !file.features_.rename_noreplace && !file.features_.hard_links) {
    throw cannot_publish_error(file.target_);
  }
  return file;
}

PendingFile::PendingFile(PendingFile&& other) noexcept
    : fd_(std::move(other.fd_)),
      target_(std::move(other.target_)),
      temporary_(std::exchange(other.temporary_, {})),
      features_(other.features_),
      replace_(other.replace_),
      published_(other.published_) {}

PendingFile& PendingFile::operator=(PendingFile&& other) noexcept {
  if (this != &other) {
    remove_temporary();
    fd_ = std::move(other.fd_);
    target_ = std::move(other.target_);
    temporary_ = std::exchange(other.temporary_, {});
    features_ = other.features_;
    replace_ = other.replace_;
    published_ = other.published_;
  }
  return *this;
}

PendingFile::~PendingFile() { remove_temporary(); }

void PendingFile::remove_temporary() noexcept {
  if (temporary_.empty() || !fd_) return;
  // Only while the name still holds this file: whatever took the name since is not ours.
  struct stat mine {};
  struct stat named {};
  if (::fstat(fd_.get(), &mine) == 0 && ::lstat(temporary_.c_str(), &named) == 0 && mine.st_dev == named.st_dev &&
      mine.st_ino == named.st_ino) {
    ::unlink(temporary_.c_str());
  }
  temporary_.clear();
}

void PendingFile::allocate(std::uint64_t bytes) {
  TILEPOOL_CHECK(fd_ && !published_);
  if (bytes == 0) return;
  const int err = detail::reserve_range(fd_.get(), 0, bytes);
  if (err == 0) return;
  if (!is_no_space(err)) throw system_error(fmt::format("{}: reserving {} bytes", quoted(target_), bytes), err);
  // What a partial reservation took is given back before the free space is read.
  (void)::ftruncate(fd_.get(), 0);
  struct statvfs st {};
  const bool known = ::fstatvfs(fd_.get(), &st) == 0;
  const std::string free_text =
      known ? fmt::format(", {} free", static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize)) : "";
  throw Error(Errc::no_space, fmt::format("{}: not enough space in {}: needs {} bytes{}", quoted(target_),
                                          quoted(directory_of(target_)), bytes, free_text));
}

void PendingFile::publish(bool replace) {
  TILEPOOL_CHECK(fd_ && !published_);
  const std::string what = quoted(target_);
  const fs::path dir = directory_of(target_);
  if (replace) refuse_replacing_special(target_);
  const detail::UniqueFd dir_fd = open_directory_to_sync(dir);
  sync_before_publishing(fd_.get(), what);
  if (temporary_.empty()) {
    // An unnamed file gets its first name from linkat(2) through /proc/self/fd, which never
    // replaces; replacing links a hidden name first and renames that over the target.
    const std::string self = fmt::format("/proc/self/fd/{}", fd_.get());
    const fs::path first = replace ? hidden_temporary_path(dir, target_.filename().string()) : target_;
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, first.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      if (errno == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", what));
      throw system_error(fmt::format("{}: publishing", what), errno);
    }
    if (replace && ::rename(first.c_str(), target_.c_str()) != 0) {
      const int err = errno;
      ::unlink(first.c_str());
      throw system_error(fmt::format("{}: publishing", what), err);
    }
    published_ = true;
    sync_open_directory(dir_fd, dir);
    return;
  }
  if (!replace && !features_.rename_noreplace && !features_.hard_links) throw cannot_publish_error(target_);
  if (replace) {
    if (::rename(temporary_.c_str(), target_.c_str()) != 0) throw system_error(fmt::format("{}: publishing", what), errno);
  } else if (features_.rename_noreplace) {
    const int err = rename_noreplace(temporary_.c_str(), target_.c_str());
    if (err == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", what));
    if (err != 0) throw system_error(fmt::format("{}: publishing", what), err);
  } else {
    if (::link(temporary_.c_str(), target_.c_str()) != 0) {
      if (errno == EEXIST) throw Error(Errc::exists, fmt::format("{}: already exists", what));
      throw system_error(fmt::format("{}: publishing", what), errno);
    }
    ::unlink(temporary_.c_str());
  }
  temporary_.clear();
  published_ = true;
  sync_open_directory(dir_fd, dir);
}

}  // namespace tilepool
