#pragma once
/// @file
/// Publication, written once: an output is built where no reader sees it, then given the
/// user's name in one step (never replacing an existing one unless asked), the directory is
/// synced, and what killed processes left behind is swept. Files (PendingFile), segments
/// (Segment::publish, publish_segment) and distributed outputs use it.
///
/// How a file is built and published depends on its filesystem, and is decided when the file
/// is created, before any work is done on it:
///
/// | the filesystem has            | built as                    | published with (no replace)  |
/// | ----------------------------- | --------------------------- | ---------------------------- |
/// | O_TMPFILE and hard links      | a file with no name         | linkat(/proc/self/fd/N)      |
/// | RENAME_NOREPLACE              | a hidden named temporary    | renameat2(RENAME_NOREPLACE)  |
/// | hard links only               | a hidden named temporary    | link(2), then unlink         |
/// | neither                       | refused when created, unless the output may replace     |
///
/// Replacing publishes with rename(2) (an unnamed file is first linked under a hidden name).
/// Hidden temporaries are named ".NAME.tilepool-HOST-PID-START-RANDOM.tmp": the host, pid and
/// start time of their owner (process_owner.hpp), so a sweep removes those of dead owners only,
/// and never judges another host's (a directory shared over NFS between nodes).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "tilepool/shared/process_owner.hpp"
#include "tilepool/shared/unique_fd.hpp"

namespace tilepool {

/// What a directory's filesystem offers to publication. Each is true where it works.
struct FileSystemFeatures {
  bool unnamed_files = true;     ///< open(O_TMPFILE): a file with no name, gone with its process
  bool rename_noreplace = true;  ///< renameat2(RENAME_NOREPLACE): rename that never replaces
  bool hard_links = true;        ///< link(2)/linkat(2)
  friend bool operator==(const FileSystemFeatures&, const FileSystemFeatures&) = default;
};

/// Tries each feature in directory `dir` with throwaway files (hidden temporaries, removed
/// before returning). For a caller that must know before the work what publication will do
/// there (a segment store given as a directory). Throws Error(bad_input) if no file can be
/// created in `dir` (missing, not a directory, not writable), naming it.
FileSystemFeatures probe_directory(const std::filesystem::path& dir);

/// What a refused publication that may not replace can do instead (the end of its message).
inline constexpr std::string_view kReplaceRemedy =
    "only a publication that may replace what is there can be made (--force; force=True in Python), or use another directory";

/// Refuses, before any work, a publication under `target` that may not replace, where the
/// filesystem of its directory can neither rename without replacing nor make hard links (a FUSE
/// mount, say): Error(bad_input) "the filesystem of DIR can neither ...; REMEDY" (the caller
/// names the target); what may replace (`replace`) needs neither and is not checked. For a
/// publication that does not go through PendingFile::create, which checks this itself (a
/// segment published with publish_path). Tried on throwaway files each call, except on local
/// filesystems (tmpfs, ext4, XFS, ...), which all can. Throws as probe_directory when nothing
/// can be created there. Thread-safe.
void check_publishable(const std::filesystem::path& target, bool replace, std::string_view remedy = kReplaceRemedy);

/// Makes a finished file's data safe to publish where its filesystem could lose a write without
/// telling: fdatasync(2) of `fd` unless the file is on a filesystem whose page cache is its own
/// (tmpfs, ramfs, ext2/3/4, XFS, Btrfs, F2FS, overlayfs), so a FUSE, NFS or SMB mount that
/// fails to write the data back fails here instead of leaving zeros under the name. Throws
/// Error(no_space) or Error(system) "WHAT: writing its data: ...". PendingFile::publish and
/// publish_segment call it.
void sync_before_publishing(int fd, const std::string& what);

/// How a PendingFile exists before it is published.
enum class TemporaryKind {
  unnamed,  ///< no name at all (O_TMPFILE) where the filesystem can, else a hidden named temporary
  named,    ///< always a hidden named temporary: another process or node can open it by path
};

/// Options of PendingFile::create.
struct PublishOptions {
  /// Whether the publication may replace an existing file. Without it, a filesystem that can
  /// neither rename without replacing nor link is refused at creation, before any work.
  bool replace = false;
  TemporaryKind temporary = TemporaryKind::unnamed;
  /// Features to use where the filesystem has them; a feature set false here is treated as
  /// missing. Production code leaves all true; a test clears some to run the fallbacks on
  /// any filesystem, as on one (a FUSE mount) that lacks them.
  FileSystemFeatures allowed{};
};

/// A file being built for the path `target`, published there only by publish(). Until then it
/// has no name, or a hidden temporary one in the same directory; destroying an unpublished
/// PendingFile removes it (an unnamed one vanishes even if the process is killed; a named one
/// left by a killed process is removed by remove_stale_file_temporaries). Move-only; one
/// thread at a time. The descriptor is open read-write; map it or write it.
class PendingFile {
 public:
  /// Creates an empty file for `target` in target's directory ("." if it has none) with mode
  /// 0666 less the umask, and decides how it will be published (see the table above): the
  /// features it needs are tried here. Throws Error(bad_input) naming the directory if a file
  /// cannot be created there, or naming `target` if it could not be published without
  /// replacing and options.replace is false; Error(system) otherwise.
  static PendingFile create(std::filesystem::path target, const PublishOptions& options = {});

  PendingFile(PendingFile&& other) noexcept;
  PendingFile& operator=(PendingFile&& other) noexcept;
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  /// Removes the file unless it was published (a named temporary only while its name still
  /// holds this file); closes the descriptor. Never throws.
  ~PendingFile();

  /// The open file (read-write), valid until this object is destroyed.
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  /// Where publish() puts it.
  [[nodiscard]] const std::filesystem::path& target() const noexcept { return target_; }
  /// The hidden temporary path, by which other processes can open the file; empty for an
  /// unnamed file and after publication.
  [[nodiscard]] const std::filesystem::path& temporary_path() const noexcept { return temporary_; }
  /// What the filesystem was found to offer (features not needed are not tried: false).
  [[nodiscard]] const FileSystemFeatures& features() const noexcept { return features_; }
  /// True once publish() succeeded.
  [[nodiscard]] bool published() const noexcept { return published_; }

  /// Reserves `bytes` bytes for the file (posix_fallocate), so a full filesystem fails here,
  /// before the work. Throws Error(no_space) "OUT: not enough space in DIR: needs N bytes, M
  /// free", Error(system) otherwise.
  void allocate(std::uint64_t bytes);

  /// Makes its data safe (sync_before_publishing: what a FUSE or network filesystem fails to
  /// write fails here, Error(no_space) or Error(system)), gives the file the name
  /// target() in one step (readers of target() see the old file or the whole new one) and
  /// syncs the directory. Without `replace`, an existing target() is
  /// kept: Error(exists). With it, a target() that is a directory, device, FIFO or socket is
  /// refused (Error(bad_input)); a file or symlink is replaced. Throws Error(system) if the
  /// filesystem refuses; on any error the file stays unpublished.
  void publish(bool replace);
  /// publish(options.replace) as given to create().
  void publish() { publish(replace_); }

 private:
  PendingFile() = default;
  void remove_temporary() noexcept;

  UniqueFd fd_;
  std::filesystem::path target_;
  std::filesystem::path temporary_;
  FileSystemFeatures features_{false, false, false};
  bool replace_ = false;
  bool published_ = false;
};

/// Gives the file at `from` the name `to` in one step, in the same directory or filesystem:
/// renameat2(RENAME_NOREPLACE) without `replace`, or link(2) + unlink where the filesystem
/// lacks it (Error(exists) if `to` exists); rename(2) with `replace`. Then syncs to's
/// directory. `what_from` and `what_to` name the two in errors ("segment 'x' (/dev/shm/x)").
/// Checks nothing about what is under either name: callers do. Throws Error(exists|system).
void publish_path(const std::filesystem::path& from, const std::filesystem::path& to, bool replace,
                  const std::string& what_from, const std::string& what_to);

/// fsync(2) of directory `dir`, so a name made or changed in it survives a crash. A filesystem
/// that cannot sync directories (EINVAL, EROFS) is not an error. Throws Error(system) naming
/// `dir` otherwise.
void sync_directory(const std::filesystem::path& dir);

/// A fresh hidden temporary name in `dir` for a file that will become `for_name`:
/// ".FOR_NAME.tilepool-HOST-PID-START-RANDOM.tmp" (FOR_NAME shortened if long), owned by
/// `owner` on this host (this process by default). Only makes the name. Thread-safe.
std::filesystem::path hidden_temporary_path(const std::filesystem::path& dir, const std::string& for_name,
                                            const ProcessOwner& owner = this_process());

/// The owner a hidden temporary's file name records, if it is one and was made on this host;
/// nullopt otherwise (another host's owner cannot be judged from here).
std::optional<ProcessOwner> parse_hidden_temporary_name(const std::string& file_name);

/// Removes from directory `dir` the hidden temporaries (hidden_temporary_path) whose owner on
/// this host is dead (owner_alive: pid and start time), and the lock files named after them
/// ("TEMPORARY-N-N.lock": what Open MPI's "lockedfile" MPI-IO component makes beside a file it
/// opens): regular files of this uid. What a killed run left (a named temporary, its MPI-IO
/// lock, or the instant between linking and renaming). Returns how many it removed; never
/// throws.
std::size_t remove_stale_file_temporaries(const std::filesystem::path& dir) noexcept;

}  // namespace tilepool
