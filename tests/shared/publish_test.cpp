// The publication module: a file is built unnamed (or under a hidden temporary name), then
// published onto its target in one step, never replacing an existing file unless asked; the
// way it will be published is decided when it is created, before any work; the temporaries of
// dead owners are swept.
//
// Filesystems without O_TMPFILE or RENAME_NOREPLACE (FUSE mounts) are simulated honestly: the
// test clears PublishOptions::allowed, so the real fallback code runs on a real filesystem
// (no libfuse here to mount one). The real filesystems are tried too: ext4 (the test
// directory) and a tmpfs the test mounts.
#include "tilepool/shared/publish.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "shared/child_process.hpp"
#include "shared/error_expectations.hpp"
#include "shared/small_tmpfs.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

namespace fs = std::filesystem;
using testing::exited_cleanly;
using testing::run_in_child;
using testing::TempDir;
using testing::throws_error;

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string contents(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

void write_to(const PendingFile& file, const std::string& text) {
  ASSERT_EQ(::pwrite(file.fd(), text.data(), text.size(), 0), static_cast<ssize_t>(text.size())) << std::strerror(errno);
}

// A filesystem that has none of the features publication prefers (a FUSE mount, as tests see it).
constexpr FileSystemFeatures kNothing{false, false, false};
// One that has hard links but neither O_TMPFILE nor RENAME_NOREPLACE.
constexpr FileSystemFeatures kLinksOnly{false, false, true};

class PublishTest : public ::testing::Test {
 protected:
  [[nodiscard]] fs::path target(const std::string& name = "out.npy") const { return dir_ / name; }
  TempDir dir_;
};

// ---- publish, no-replace and replace ---------------------------------------------------------

TEST_F(PublishTest, PublishWithoutReplaceGivesTheFileItsTargetNameAndNothingElseRemains) {
  PendingFile file = PendingFile::create(target());
  write_to(file, "result");

  file.publish(/*replace=*/false);

  EXPECT_TRUE(file.published());
  EXPECT_EQ(contents(target()), "result");
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{"out.npy"});
}

TEST_F(PublishTest, PublishWithoutReplaceKeepsAFileThatAppearedDuringTheWork) {
  PendingFile file = PendingFile::create(target());
  write_to(file, "result");
  write_text(target(), "precious");

  EXPECT_TRUE(throws_error([&] { file.publish(false); }, Errc::exists, {target().string() + ": already exists"}));
  EXPECT_FALSE(file.published());
  EXPECT_EQ(contents(target()), "precious");
}

TEST_F(PublishTest, PublishWithReplaceReplacesTheOldFileWhileOpenReadersKeepIt) {
  write_text(target(), "old");
  const int old_fd = ::open(target().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0);
  PendingFile file = PendingFile::create(target(), PublishOptions{.replace = true});
  write_to(file, "new");

  file.publish(/*replace=*/true);

  char buf[8] = {};
  const ssize_t n = ::pread(old_fd, buf, sizeof buf, 0);
  ::close(old_fd);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "old");
  EXPECT_EQ(contents(target()), "new");
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{"out.npy"});
}

TEST_F(PublishTest, PublishWithReplaceRefusesToReplaceADirectory) {
  fs::create_directory(target());
  PendingFile file = PendingFile::create(target(), PublishOptions{.replace = true});

  EXPECT_TRUE(throws_error([&] { file.publish(true); }, Errc::bad_input, {"not a regular file; refusing to replace it"}));
  EXPECT_TRUE(fs::is_directory(target()));
}

TEST_F(PublishTest, AnUnpublishedFileLeavesNothingWhenDestroyed) {
  for (const auto kind : {TemporaryKind::unnamed, TemporaryKind::named}) {
    {
      PendingFile file = PendingFile::create(target(), PublishOptions{.temporary = kind});
      write_to(file, "abandoned");
    }
    EXPECT_TRUE(entries(dir_.path()).empty()) << "kind " << static_cast<int>(kind);
  }
}

TEST_F(PublishTest, CreatingInAMissingDirectoryIsBadInputNamingTheDirectory) {
  const fs::path missing = dir_ / "no" / "such";

  EXPECT_TRUE(throws_error([&] { (void)PendingFile::create(missing / "out.npy"); }, Errc::bad_input,
                           {(missing / "out.npy").string() + ": cannot create a file in " + missing.string() + ": "}));
}

// ---- directory sync ----------------------------------------------------------------------------

TEST_F(PublishTest, SyncingTheDirectoryOfAPublicationDoesNotFailOnExt4OrTmpfs) {
  EXPECT_NO_THROW(sync_directory(dir_.path()));
  testing::SmallTmpfs tmpfs("1m");
  if (!tmpfs.mounted()) GTEST_SKIP() << tmpfs.why();
  EXPECT_NO_THROW(sync_directory(tmpfs.path()));
  PendingFile file = PendingFile::create(tmpfs.path() / "out.npy");
  EXPECT_NO_THROW(file.publish(false));
}

TEST_F(PublishTest, SyncingAMissingDirectoryFailsNamingIt) {
  EXPECT_TRUE(throws_error([&] { sync_directory(dir_ / "gone"); }, Errc::system, {(dir_ / "gone").string()}));
}

// ---- the method is chosen when the file is created -------------------------------------------

TEST_F(PublishTest, OnExt4AndTmpfsTheFileIsBuiltWithNoNameAtAll) {
  PendingFile on_disk = PendingFile::create(target());
  EXPECT_TRUE(on_disk.features().unnamed_files);
  EXPECT_TRUE(on_disk.temporary_path().empty());
  EXPECT_TRUE(entries(dir_.path()).empty());

  testing::SmallTmpfs tmpfs("1m");
  if (!tmpfs.mounted()) GTEST_SKIP() << tmpfs.why();
  PendingFile in_memory = PendingFile::create(tmpfs.path() / "out.npy");
  EXPECT_TRUE(in_memory.features().unnamed_files);
  EXPECT_TRUE(in_memory.temporary_path().empty());
}

TEST_F(PublishTest, ProbingExt4FindsEveryFeatureAndLeavesNothing) {
  EXPECT_EQ(probe_directory(dir_.path()), (FileSystemFeatures{true, true, true}));
  EXPECT_TRUE(entries(dir_.path()).empty());
}

TEST_F(PublishTest, WithoutUnnamedFilesAHiddenTemporaryOfThisProcessIsMadeWhenTheFileIsCreated) {
  PendingFile file = PendingFile::create(target(), PublishOptions{.allowed = FileSystemFeatures{false, true, true}});

  ASSERT_FALSE(file.temporary_path().empty());
  EXPECT_TRUE(fs::is_regular_file(file.temporary_path()));
  EXPECT_EQ(file.temporary_path().parent_path(), dir_.path());
  EXPECT_EQ(parse_hidden_temporary_name(file.temporary_path().filename().string()), this_process());
  EXPECT_TRUE(file.features().rename_noreplace);
  write_to(file, "result");

  file.publish(false);

  EXPECT_EQ(contents(target()), "result");
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{"out.npy"});
}

TEST_F(PublishTest, WithoutRenameNoReplaceTheFileIsPublishedByLinkAndNeverReplaces) {
  PendingFile kept = PendingFile::create(target(), PublishOptions{.allowed = kLinksOnly});
  ASSERT_FALSE(kept.features().rename_noreplace);
  ASSERT_TRUE(kept.features().hard_links);
  write_text(target(), "precious");
  EXPECT_TRUE(throws_error([&] { kept.publish(false); }, Errc::exists, {"already exists"}));
  EXPECT_EQ(contents(target()), "precious");
  fs::remove(target());

  PendingFile file = PendingFile::create(target(), PublishOptions{.allowed = kLinksOnly});
  write_to(file, "result");
  file.publish(false);

  EXPECT_EQ(contents(target()), "result");
  EXPECT_EQ(fs::hard_link_count(target()), 1U);
}

TEST_F(PublishTest, WithNeitherRenameNoReplaceNorLinksANoReplacePublicationIsRefusedBeforeAnyWork) {
  EXPECT_TRUE(throws_error([&] { (void)PendingFile::create(target(), PublishOptions{.allowed = kNothing}); },
                           Errc::bad_input, {target().string(), "can neither rename without replacing", "nor make hard links"}));
  EXPECT_TRUE(entries(dir_.path()).empty());
}

TEST_F(PublishTest, WithNeitherRenameNoReplaceNorLinksAReplacingPublicationStillWorks) {
  write_text(target(), "old");
  PendingFile file = PendingFile::create(target(), PublishOptions{.replace = true, .allowed = kNothing});
  write_to(file, "new");

  file.publish();

  EXPECT_EQ(contents(target()), "new");
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{"out.npy"});
}

TEST_F(PublishTest, ANpyFileOutputPublishesThroughTheFallbackWhereTheFilesystemLacksEverythingButLinks) {
  ArraySegment out = ArraySegment::create_npy_file(target(), DType::uint8, Shape{4}, PublishOptions{.allowed = kLinksOnly});
  ASSERT_NE(out.segment().pending_file(), nullptr);
  EXPECT_FALSE(out.segment().pending_file()->temporary_path().empty());
  std::memset(out.data(), 9, 4);

  out.publish_npy_file(target(), /*replace=*/false);

  EXPECT_EQ(contents(target()), npy::make_header(DType::uint8, Shape{4}) + std::string(4, '\x09'));
  EXPECT_EQ(entries(dir_.path()), std::vector<std::string>{"out.npy"});
}

TEST_F(PublishTest, ANamedTemporaryCanBeOpenedByPathByAnotherProcessAndIsThenPublished) {
  PendingFile file = PendingFile::create(target(), PublishOptions{.temporary = TemporaryKind::named});
  const fs::path temporary = file.temporary_path();
  ASSERT_FALSE(temporary.empty());

  const int status = run_in_child([&] {
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CLOEXEC);
    return fd >= 0 && ::pwrite(fd, "node", 4, 0) == 4 ? 0 : 1;
  });
  ASSERT_TRUE(exited_cleanly(status));
  file.publish(false);

  EXPECT_EQ(contents(target()), "node");
  EXPECT_FALSE(fs::exists(temporary));
}

// ---- out of space ----------------------------------------------------------------------------

TEST_F(PublishTest, ReservingMoreThanTheFilesystemHoldsNamesTheFileAndItsDirectory) {
  testing::SmallTmpfs tmpfs("1m");
  if (!tmpfs.mounted()) GTEST_SKIP() << tmpfs.why();
  const fs::path out = tmpfs.path() / "out.npy";
  PendingFile file = PendingFile::create(out);

  try {
    file.allocate(std::uint64_t{2} << 20);
    FAIL() << "reserved 2 MiB on a 1 MiB filesystem";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), Errc::no_space) << message;
    EXPECT_EQ(message.rfind(out.string() + ": not enough space in " + tmpfs.path().string() + ": needs 2097152 bytes, ", 0), 0U)
        << message;
    EXPECT_NE(message.find(" free"), std::string::npos) << message;
    EXPECT_EQ(message.find("--"), std::string::npos) << "a library message names no flag: " << message;
  }
}

TEST_F(PublishTest, ANpyFileTooLargeForItsFilesystemFailsWhenCreatedNamingTheOutput) {
  testing::SmallTmpfs tmpfs("1m");
  if (!tmpfs.mounted()) GTEST_SKIP() << tmpfs.why();
  const fs::path out = tmpfs.path() / "big.npy";

  EXPECT_TRUE(throws_error([&] { (void)ArraySegment::create_npy_file(out, DType::uint8, Shape{2 << 20}); }, Errc::no_space,
                           {out.string() + ": not enough space in " + tmpfs.path().string()}));
  EXPECT_TRUE(entries(tmpfs.path()).empty());
}

// ---- hidden temporaries and the sweep ----------------------------------------------------------

TEST_F(PublishTest, AHiddenTemporaryNameRecordsItsOwnerOnThisHost) {
  const ProcessOwner owner{12345, 678};
  const fs::path path = hidden_temporary_path(dir_.path(), "out.npy", owner);
  const std::string name = path.filename().string();

  EXPECT_TRUE(name.starts_with(".out.npy.tilepool-")) << name;
  EXPECT_TRUE(name.ends_with(".tmp")) << name;
  EXPECT_EQ(parse_hidden_temporary_name(name), owner);
  EXPECT_NE(hidden_temporary_path(dir_.path(), "out.npy", owner), path) << "two names for one owner must differ";
}

TEST_F(PublishTest, NamesThatAreNotThisHostsTemporariesAreNotParsed) {
  for (const std::string name : {"out.npy", ".out.npy.tmp", ".out.npy.tilepool-otherhost-12-34-0123456789abcdef.tmp",
                                 ".tilepool-123-0123abcd.tmp", ".x.tilepool-h-12-34-0123456789abcdeg.tmp"}) {
    EXPECT_EQ(parse_hidden_temporary_name(name), std::nullopt) << name;
  }
}

TEST_F(PublishTest, ALongOutputNameStillGivesATemporaryThatCanBeCreated) {
  const std::string long_name(200, 'n');
  PendingFile file = PendingFile::create(target(long_name), PublishOptions{.temporary = TemporaryKind::named});

  EXPECT_TRUE(fs::exists(file.temporary_path()));
  EXPECT_TRUE(parse_hidden_temporary_name(file.temporary_path().filename().string()).has_value());
}

TEST_F(PublishTest, TheSweepRemovesOnlyTheTemporariesOfDeadOwners) {
  // A child that stays alive until killed; its temporary is live until then.
  const pid_t child = ::fork();
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  const auto child_start = process_start_time(child);
  ASSERT_TRUE(child_start.has_value());
  const fs::path childs = hidden_temporary_path(dir_.path(), "a.npy", ProcessOwner{child, *child_start});
  const fs::path mine = hidden_temporary_path(dir_.path(), "b.npy");
  // This process's pid with another start time: a process that had the pid before us.
  const fs::path reused = hidden_temporary_path(dir_.path(), "c.npy", ProcessOwner{::getpid(), this_process().start_time + 1});
  const fs::path other_host = dir_ / ".d.npy.tilepool-elsewhere-1-1-0123456789abcdef.tmp";
  const fs::path users = dir_ / "e.npy";
  for (const auto& p : {childs, mine, reused, other_host, users}) write_text(p, "x");

  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 1U);
  EXPECT_FALSE(fs::exists(reused));
  EXPECT_TRUE(fs::exists(childs));

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 1U);

  EXPECT_FALSE(fs::exists(childs));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(other_host));
  EXPECT_TRUE(fs::exists(users));
}

TEST_F(PublishTest, TheSweepRemovesTheLockFilesOfADeadOwnersTemporaryAndKeepsALiveOwners) {
  // Open MPI's "lockedfile" MPI-IO component names its lock TEMPORARY-JOBID-PID.lock; the
  // temporary itself may be gone already (removed by its owner's signal handler).
  const std::string lock_suffix = "-3735879681-4242.lock";
  // This process's pid with another start time: a process that had the pid before us.
  const fs::path dead = hidden_temporary_path(dir_.path(), "a.npy", ProcessOwner{::getpid(), this_process().start_time + 1});
  const fs::path dead_lock = dead.string() + lock_suffix;
  const fs::path live_lock = hidden_temporary_path(dir_.path(), "b.npy").string() + lock_suffix;
  const fs::path not_a_lock = dead.string() + "-x-4242.lock";
  const fs::path other_suffix = dead.string() + lock_suffix + ".bak";
  for (const auto& p : {dead_lock, live_lock, not_a_lock, other_suffix}) write_text(p, "x");

  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 1U);

  EXPECT_FALSE(fs::exists(dead_lock));
  EXPECT_TRUE(fs::exists(live_lock));
  EXPECT_TRUE(fs::exists(not_a_lock));
  EXPECT_TRUE(fs::exists(other_suffix));
}

TEST_F(PublishTest, TheSweepLeavesADirectoryAndASymlinkWithATemporarysName) {
  const fs::path dead_dir = hidden_temporary_path(dir_.path(), "a.npy", ProcessOwner{::getpid(), 1});
  const fs::path dead_link = hidden_temporary_path(dir_.path(), "b.npy", ProcessOwner{::getpid(), 1});
  fs::create_directory(dead_dir);
  fs::create_symlink(dir_ / "elsewhere", dead_link);

  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 0U);
  EXPECT_TRUE(fs::is_directory(dead_dir));
  EXPECT_TRUE(fs::is_symlink(dead_link));
}

TEST_F(PublishTest, ATemporaryOfAKilledProcessIsSweptAndALiveOnesIsNot) {
  // The child makes a named pending file and is killed while holding it.
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    try {
      PendingFile file = PendingFile::create(target(), PublishOptions{.temporary = TemporaryKind::named});
      (void)::write(ready[1], "1", 1);
      ::pause();
    } catch (...) {  // NOLINT(bugprone-empty-catch): the parent sees no temporary and fails
    }
    ::_exit(1);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(entries(dir_.path()).size(), 1U);
  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 0U) << "the owner is alive";

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);

  EXPECT_EQ(remove_stale_file_temporaries(dir_.path()), 1U);
  EXPECT_TRUE(entries(dir_.path()).empty());
}

}  // namespace
}  // namespace tilepool
