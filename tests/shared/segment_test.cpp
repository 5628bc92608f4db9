#include "tilepool/shared/segment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "shared/child_process.hpp"
#include "shared/error_expectations.hpp"
#include "shared/fifo_guard.hpp"
#include "shared/small_tmpfs.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::TempDir;
using testing::throws_error;
using testing::unique_name;

const std::filesystem::path kShm = "/dev/shm";

// Sets the process umask for one test and restores the old one.
class UmaskGuard {
 public:
  explicit UmaskGuard(mode_t mask) : old_(::umask(mask)) {}
  UmaskGuard(const UmaskGuard&) = delete;
  UmaskGuard& operator=(const UmaskGuard&) = delete;
  ~UmaskGuard() { ::umask(old_); }

 private:
  mode_t old_;
};

// Removes a /dev/shm entry a test made by hand (file, symlink, FIFO or directory), whatever
// the test's outcome. Never follows a symlink.
class EntryCleanup {
 public:
  explicit EntryCleanup(std::filesystem::path path) : path_(std::move(path)) {}
  EntryCleanup(const EntryCleanup&) = delete;
  EntryCleanup& operator=(const EntryCleanup&) = delete;
  ~EntryCleanup() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }

 private:
  std::filesystem::path path_;
};

mode_t mode_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode;
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Makes a plain file the way another program would (not through tilepool).
void make_foreign_file(const std::filesystem::path& path, const std::string& contents, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
  ASSERT_EQ(::fchmod(fd, mode), 0);
  ::close(fd);
}

std::vector<std::string> directory_entries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

constexpr uid_t kOtherUid = 65534;  // nobody

// ---- create ---------------------------------------------------------------------------------

TEST(SegmentTest, CreateMakesAnOwnerOnlyFileOfTheRequestedSize) {
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 4096);
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 4096);
  EXPECT_EQ(seg.size(), 4096u);
  EXPECT_TRUE(seg.owns_name());
}

TEST(SegmentTest, CreateReportsItsNameAndBacking) {
  const std::string name = unique_name();

  Segment seg = Segment::create(name, 64);

  EXPECT_EQ(seg.name(), name);
  EXPECT_EQ(seg.backing(), Backing{});
  EXPECT_EQ(seg.mapping()->size(), 64u);
  EXPECT_EQ(seg.mapping()->data(), seg.data());
}

TEST(SegmentTest, CreateMakesModeOwnerOnlyUnderAPermissiveUmask) {
  const std::string name = unique_name();
  const UmaskGuard umask(0);

  Segment seg = Segment::create(name, 64);

  EXPECT_EQ(mode_of(kShm / name) & 07777, 0600u);
}

TEST(SegmentTest, CreateMakesModeOwnerOnlyUnderAStrictUmask) {
  const std::string name = unique_name();
  const UmaskGuard umask(077);

  Segment seg = Segment::create(name, 64);

  EXPECT_EQ(mode_of(kShm / name) & 07777, 0600u);
}

TEST(SegmentTest, CreateMakesModeOwnerReadWriteEvenWhenTheUmaskDeniesOwnerWrite) {
  const std::string name = unique_name();
  const UmaskGuard umask(0277);

  Segment seg = Segment::create(name, 64);

  EXPECT_EQ(mode_of(kShm / name) & 07777, 0600u);
}

TEST(SegmentTest, CreateWithFileBackingMakesModeOwnerOnlyWhateverTheUmask) {
  TempDir dir;
  for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}, mode_t{0277}}) {
    const std::string name = unique_name();
    const UmaskGuard umask(mask);

    Segment seg = Segment::create(name, 64, Backing::file(dir.path()));

    EXPECT_EQ(mode_of(dir / name) & 07777, 0600u) << "umask " << std::oct << mask;
  }
}

TEST(SegmentTest, CreateZeroFillsTheSegment) {
  const std::string name = unique_name();

  Segment seg = Segment::create(name, 8192);

  const std::vector<std::byte> zeros(8192);
  EXPECT_EQ(std::memcmp(seg.data(), zeros.data(), zeros.size()), 0);
}

TEST(SegmentTest, CreateWithoutPopulateMapsTheSameMemory) {
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 4096, {}, MapOptions{.populate = false});
  Segment other = Segment::attach(name, {}, MapOptions{.populate = false});

  std::memcpy(seg.data() + 4000, "tail", 4);

  EXPECT_EQ(std::memcmp(other.data() + 4000, "tail", 4), 0);
}

TEST(SegmentTest, CreateFailsWhenNameExists) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 64); }, Errc::exists, {name, "already exists"}));
  EXPECT_TRUE(owner.owns_name());
}

TEST(SegmentTest, CreateFailsClosedWhenTheNameIsTakenByAnotherProgramsFile) {
  const std::string name = unique_name();
  const auto path = kShm / name;
  make_foreign_file(path, "someone else's data", 0644);
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 4096); }, Errc::exists, {name, "already exists"}));

  EXPECT_EQ(read_text(path), "someone else's data");
  EXPECT_EQ(mode_of(path) & 07777, 0644u);
}

TEST(SegmentTest, CreateDoesNotFollowASymlinkNorRemoveIt) {
  TempDir dir;
  const auto target = dir / "target";
  make_foreign_file(target, "target data", 0644);
  const std::string name = unique_name();
  const auto link = kShm / name;
  std::filesystem::create_symlink(target, link);
  const EntryCleanup cleanup(link);

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 4096); }, Errc::exists, {name}));

  EXPECT_TRUE(S_ISLNK(mode_of(link)));
  EXPECT_EQ(read_text(target), "target data");
  EXPECT_EQ(mode_of(target) & 07777, 0644u);
}

TEST(SegmentTest, CreateDoesNotCreateTheTargetOfADanglingSymlink) {
  TempDir dir;
  const auto target = dir / "would-be-created";
  const std::string name = unique_name();
  const auto link = kShm / name;
  std::filesystem::create_symlink(target, link);
  const EntryCleanup cleanup(link);

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 4096); }, Errc::exists, {name}));

  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(target)));
  EXPECT_TRUE(S_ISLNK(mode_of(link)));
}

TEST(SegmentTest, CreateWithFileBackingDoesNotFollowASymlink) {
  TempDir dir;
  const auto target = dir / "target";
  make_foreign_file(target, "target data", 0644);
  const std::string name = unique_name();
  std::filesystem::create_symlink(target, dir / name);

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 4096, Backing::file(dir.path())); }, Errc::exists, {name}));

  EXPECT_TRUE(S_ISLNK(mode_of(dir / name)));
  EXPECT_EQ(read_text(target), "target data");
}

TEST(SegmentTest, CreateRejectsAnInvalidName) {
  for (const std::string& name : {std::string(""), std::string("a/b"), std::string(".hidden"), std::string(201, 'x')}) {
    EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 64); }, Errc::usage, {"segment name"})) << name;
  }
}

TEST(SegmentTest, CreateOfZeroBytesIsABrokenInvariant) {
  const std::string name = unique_name();

  EXPECT_DEATH((void)Segment::create(name, 0), "internal invariant broken");
}

TEST(SegmentTest, CreateFailsWithNoSpaceWhenTheStoreIsTooSmallAndLeavesNothing) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, std::size_t{4} << 20, Backing::file(fs.path())); },
                           Errc::no_space, {name, "not enough space", "4194304 bytes", fs.path().string()}));

  EXPECT_TRUE(directory_entries(fs.path()).empty());
}

TEST(SegmentTest, CreateThatFitsTheStoreSucceeds) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const std::string name = unique_name();

  Segment seg = Segment::create(name, std::size_t{256} << 10, Backing::file(fs.path()));

  EXPECT_EQ(seg.size(), std::size_t{256} << 10);
}

// ---- attach ---------------------------------------------------------------------------------

TEST(SegmentTest, AttacherNeverUnlinks) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 128);
  { Segment attached = Segment::attach(name); EXPECT_FALSE(attached.owns_name()); }
  EXPECT_TRUE(segment_exists(name));
}

TEST(SegmentTest, WritesThroughOneMappingAreSeenThroughAnother) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  Segment other = Segment::attach(name);
  std::memcpy(owner.data(), "hello", 5);
  EXPECT_EQ(std::memcmp(other.data(), "hello", 5), 0);
}

TEST(SegmentTest, AttachMapsTheWholeSegment) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 12345);

  Segment attached = Segment::attach(name);

  EXPECT_EQ(attached.size(), 12345u);
  EXPECT_EQ(attached.name(), name);
}

TEST(SegmentTest, AttachFailsWhenTheNameIsAbsent) {
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input, {name, "does not exist"}));
}

TEST(SegmentTest, AttachWithFileBackingFailsWhenTheNameIsAbsent) {
  TempDir dir;
  const std::string name = unique_name();

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, Backing::file(dir.path())); }, Errc::bad_input,
                           {name, "does not exist"}));
}

TEST(SegmentTest, AttachRejectsAnInvalidName) {
  EXPECT_TRUE(throws_error([] { (void)Segment::attach("../etc/passwd"); }, Errc::usage, {"segment name"}));
}

TEST(SegmentTest, AttachRefusesAFifo) {
  const std::string name = unique_name();
  const auto path = kShm / name;
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input, {name, "not a regular file"}));
}

// A store on a read-only filesystem: bad input (exit 2, as `run` says of an output directory),
// not a system error (`tilepool put` exited 1).
TEST(SegmentTest, CreatingInAStoreThatCannotBeWrittenIsBadInput) {
  TempDir dir;
  if (::mount("tmpfs", dir.path().c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m") != 0) {
    GTEST_SKIP() << "mount -t tmpfs -o ro failed: " << std::strerror(errno);
  }
  const std::string name = unique_name();
  EXPECT_TRUE(throws_error([&] { (void)Segment::create(name, 4096, Backing::file(dir.path())); }, Errc::bad_input,
                           {name, "cannot create it there", "Read-only file system"}));
  ::umount2(dir.path().c_str(), MNT_DETACH);
}

TEST(SegmentTest, ReadOnlyAttachRefusesAFifoWithoutBlocking) {
  // Opening a FIFO read-only waits for a writer: attach must refuse it before opening.
  const std::string name = unique_name();
  const auto path = kShm / name;
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(testing::returns_without_blocking(path, [&] {
    return throws_error([&] { (void)Segment::attach(name, {}, MapOptions{.populate = true, .read_only = true}); },
                        Errc::bad_input, {name, "not a regular file"});
  }));
}

TEST(SegmentTest, AttachRefusesADirectory) {
  const std::string name = unique_name();
  const auto path = kShm / name;
  ASSERT_TRUE(std::filesystem::create_directory(path));
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input, {name, "not a regular file"}));
}

TEST(SegmentTest, AttachWithFileBackingRefusesADirectory) {
  TempDir dir;
  const std::string name = unique_name();
  std::filesystem::create_directory(dir / name);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, Backing::file(dir.path())); }, Errc::bad_input,
                           {name, "not a regular file"}));
}

TEST(SegmentTest, AttachRefusesASymlinkEvenToAValidSegment) {
  const std::string real = unique_name("real");
  Segment owner = Segment::create(real, 64);
  const std::string name = unique_name("link");
  const auto link = kShm / name;
  std::filesystem::create_symlink(kShm / real, link);
  const EntryCleanup cleanup(link);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input, {name, "symlink"}));
}

TEST(SegmentTest, AttachWithFileBackingRefusesASymlink) {
  TempDir dir;
  const std::string real = unique_name("real");
  Segment owner = Segment::create(real, 64, Backing::file(dir.path()));
  const std::string name = unique_name("link");
  std::filesystem::create_symlink(dir / real, dir / name);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, Backing::file(dir.path())); }, Errc::bad_input,
                           {name, "symlink"}));
}

TEST(SegmentTest, AttachRefusesASegmentOwnedByAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a segment to another uid";
  const std::string name = unique_name();
  const auto path = kShm / name;
  make_foreign_file(path, std::string(64, 'x'), 0666);
  const EntryCleanup cleanup(path);
  ASSERT_EQ(::chown(path.c_str(), kOtherUid, kOtherUid), 0);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input,
                           {name, "owned by uid 65534", "not by this user"}));
}

TEST(SegmentTest, AttachFailsWhenTheSegmentIsSmallerThanTheMinimumSize) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, {}, {}, 128); }, Errc::bad_input,
                           {name, "too small: 64 bytes, expected at least 128"}));
}

TEST(SegmentTest, AttachAcceptsASegmentOfExactlyTheMinimumSize) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 128);

  EXPECT_EQ(Segment::attach(name, {}, {}, 128).size(), 128u);
}

TEST(SegmentTest, AttachFailsOnAnEmptySegment) {
  const std::string name = unique_name();
  const auto path = kShm / name;
  make_foreign_file(path, "", 0600);
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name); }, Errc::bad_input, {name, "too small: 0 bytes"}));
}

TEST(SegmentTest, AttachFailsWithAnErrorWhenTheSegmentIsTooLargeToMap) {
  // A sparse 200 TiB segment costs no memory but exceeds the 128 TiB user address space.
  const std::string name = unique_name();
  const auto path = kShm / name;
  make_foreign_file(path, "", 0600);
  const EntryCleanup cleanup(path);
  ASSERT_EQ(::truncate(path.c_str(), off_t{200} << 40), 0) << std::strerror(errno);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, {}, MapOptions{.populate = false}); }, Errc::system,
                           {name}));
}

TEST(SegmentTest, ReadOnlyAttachSeesTheData) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  std::memcpy(owner.data(), "read me", 7);

  Segment reader = Segment::attach(name, {}, MapOptions{.populate = true, .read_only = true});

  EXPECT_EQ(std::memcmp(reader.data(), "read me", 7), 0);
}

TEST(SegmentTest, ReadOnlyAttachCannotWrite) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  Segment reader = Segment::attach(name, {}, MapOptions{.populate = true, .read_only = true});
  auto* volatile target = reinterpret_cast<volatile char*>(reader.data());

  EXPECT_DEATH(*target = 'x', "");
  EXPECT_EQ(owner.data()[0], std::byte{0});
}

TEST(SegmentTest, WritingThroughAReadOnlyMappingKillsWithSigsegv) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  Segment reader = Segment::attach(name, {}, MapOptions{.read_only = true});

  const int status = testing::run_in_child([&] {
    *reinterpret_cast<volatile char*>(reader.data()) = 'x';
    return 0;
  });

  EXPECT_TRUE(testing::died_of(status, SIGSEGV));
  EXPECT_EQ(owner.data()[0], std::byte{0});
}

TEST(SegmentTest, ReadOnlyAttachReportsThatItIsReadOnly) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);

  EXPECT_TRUE(Segment::attach(name, {}, MapOptions{.read_only = true}).read_only());
  EXPECT_FALSE(Segment::attach(name).read_only());
  EXPECT_FALSE(owner.read_only());
}

// In a child that has lost root's power to bypass permissions: 0 if a read-only attach of
// `name` sees `expected` and a read-write attach is refused as bad input; another status says
// which step went wrong.
int read_only_attach_works_but_read_write_does_not(const std::string& name, const Backing& backing,
                                                   std::string_view expected) {
  if (!testing::drop_permission_override()) return 10;
  try {
    const Segment reader = Segment::attach(name, backing, MapOptions{.read_only = true});
    if (std::memcmp(reader.data(), expected.data(), expected.size()) != 0) return 11;
  } catch (const Error&) {
    return 12;
  }
  try {
    (void)Segment::attach(name, backing);
    return 13;  // the permissions did not bite: the test proves nothing
  } catch (const Error& e) {
    if (e.code() != Errc::bad_input) return 14;
    if (std::string(e.what()).find(name) == std::string::npos) return 15;
  }
  return 0;
}

TEST(SegmentTest, ReadOnlyAttachOpensASegmentThisUserMayOnlyRead) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  std::memcpy(owner.data(), "mine to read", 12);
  ASSERT_EQ(::chmod((kShm / name).c_str(), 0400), 0);

  const int status = testing::run_in_child([&] { return read_only_attach_works_but_read_write_does_not(name, {}, "mine to read"); });

  EXPECT_TRUE(testing::exited_cleanly(status));
}

TEST(SegmentTest, ReadOnlyAttachOpensAFileBackedSegmentInADirectoryThisUserMayNotWrite) {
  TempDir dir;
  const Backing backing = Backing::file(dir / "store");
  std::filesystem::create_directory(dir / "store");
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64, backing);
  std::memcpy(owner.data(), "read-only dir", 13);
  owner.release_name();  // TempDir removes it
  ASSERT_EQ(::chmod((dir / "store" / name).c_str(), 0400), 0);
  ASSERT_EQ(::chmod((dir / "store").c_str(), 0500), 0);

  const int status =
      testing::run_in_child([&] { return read_only_attach_works_but_read_write_does_not(name, backing, "read-only dir"); });

  ::chmod((dir / "store").c_str(), 0700);
  EXPECT_TRUE(testing::exited_cleanly(status));
}

TEST(SegmentTest, ReadOnlyAttachOpensASegmentOnAReadOnlyMount) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const Backing backing = Backing::file(fs.path());
  const std::string name = unique_name();
  {
    Segment owner = Segment::create(name, 64, backing);
    std::memcpy(owner.data(), "frozen", 6);
    owner.release_name();
  }
  ASSERT_EQ(::mount(nullptr, fs.path().c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno);

  const Segment reader = Segment::attach(name, backing, MapOptions{.read_only = true});

  EXPECT_EQ(std::memcmp(reader.data(), "frozen", 6), 0);
  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, backing); }, Errc::bad_input,
                           {name, "cannot open for reading and writing", "Read-only file system"}));
}

// ---- identity -------------------------------------------------------------------------------

TEST(SegmentTest, IdentityIsTheDeviceInodeAndSizeOfTheObject) {
  const std::string name = unique_name();
  const Segment seg = Segment::create(name, 4096);
  struct stat st {};
  ASSERT_EQ(::stat((kShm / name).c_str(), &st), 0);

  EXPECT_EQ(seg.identity().device, st.st_dev);
  EXPECT_EQ(seg.identity().inode, st.st_ino);
  EXPECT_EQ(seg.identity().size, 4096u);
}

TEST(SegmentTest, EveryHandleOnOneObjectHasItsIdentity) {
  const std::string name = unique_name();
  const Segment owner = Segment::create(name, 4096);

  EXPECT_EQ(Segment::attach(name).identity(), owner.identity());
  EXPECT_EQ(Segment::attach(name, {}, MapOptions{.read_only = true}).identity(), owner.identity());
}

TEST(SegmentTest, IdentityPrintsItsDeviceInodeAndSize) {
  const SegmentIdentity id{.device = (std::uint64_t{8} << 8) | 1, .inode = 1234, .size = 4096};
  std::ostringstream out;

  out << id;

  EXPECT_EQ(to_string(id), "device 8:1, inode 1234, 4096 bytes");
  EXPECT_EQ(out.str(), to_string(id));
}

TEST(SegmentTest, AnObjectRecreatedUnderTheSameNameHasAnotherIdentity) {
  const std::string name = unique_name();
  Segment first = Segment::create(name, 4096);
  ASSERT_TRUE(remove_segment(name));

  const Segment second = Segment::create(name, 4096);

  EXPECT_NE(second.identity(), first.identity());
  EXPECT_EQ(second.identity().size, first.identity().size);
}

TEST(SegmentTest, AttachWithTheExpectedIdentityAttachesTheSameObject) {
  const std::string name = unique_name();
  const Segment owner = Segment::create(name, 4096);

  const Segment again = Segment::attach(name, {}, MapOptions{.expected_identity = owner.identity()});

  EXPECT_EQ(again.identity(), owner.identity());
}

TEST(SegmentTest, AttachWithTheExpectedIdentityRefusesAnObjectRecreatedUnderTheName) {
  const std::string name = unique_name();
  Segment first = Segment::create(name, 4096);
  const SegmentIdentity pinned = Segment::attach(name).identity();
  ASSERT_TRUE(remove_segment(name));
  const Segment second = Segment::create(name, 4096);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, {}, MapOptions{.expected_identity = pinned}); },
                           Errc::bad_input,
                           {"segment '" + name + "' was replaced or resized since the job started: ", to_string(pinned),
                            to_string(second.identity())}));
}

TEST(SegmentTest, AttachWithTheExpectedIdentityRefusesATruncatedSegment) {
  for (const off_t new_size : {off_t{0}, off_t{1024}, off_t{8192}}) {
    const std::string name = unique_name();
    const Segment owner = Segment::create(name, 4096);
    ASSERT_EQ(::truncate((kShm / name).c_str(), new_size), 0);

    EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, {}, MapOptions{.expected_identity = owner.identity()}); },
                             Errc::bad_input, {"segment '" + name + "' was replaced or resized", "4096 bytes"}))
        << new_size;
  }
}

TEST(SegmentTest, AttachWithTheExpectedIdentityReportsARemovedSegment) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 4096);
  owner.remove_name();

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, {}, MapOptions{.expected_identity = owner.identity()}); },
                           Errc::bad_input, {"segment '" + name + "' was removed since the job started"}));
}

TEST(SegmentTest, AttachWithTheExpectedIdentityRefusesAReplacedFileBackedSegment) {
  TempDir dir;
  const Backing backing = Backing::file(dir.path());
  const std::string name = unique_name();
  Segment first = Segment::create(name, 4096, backing);
  first.remove_name();
  const Segment second = Segment::create(name, 4096, backing);

  EXPECT_TRUE(throws_error([&] { (void)Segment::attach(name, backing, MapOptions{.expected_identity = first.identity()}); },
                           Errc::bad_input, {"segment '" + name + "' was replaced or resized since the job started"}));
}

TEST(SegmentTest, ACreatorDoesNotRemoveAnotherObjectThatTookItsName) {
  const std::string name = unique_name();
  {
    Segment first = Segment::create(name, 64);
    ASSERT_TRUE(remove_segment(name));
    Segment second = Segment::create(name, 64);
    second.release_name();
  }  // `first` is destroyed here, owning a name that now holds `second`

  EXPECT_TRUE(segment_exists(name));
  EXPECT_TRUE(remove_segment(name));
}

// ---- file backing ---------------------------------------------------------------------------

TEST(SegmentTest, CreateWithFileBackingMakesAFileInTheDirectory) {
  TempDir dir;
  const std::string name = unique_name();

  Segment seg = Segment::create(name, 4096, Backing::file(dir.path()));

  EXPECT_EQ(std::filesystem::file_size(dir / name), 4096u);
  EXPECT_FALSE(std::filesystem::exists(kShm / name));
  EXPECT_EQ(seg.backing(), Backing::file(dir.path()));
}

TEST(SegmentTest, AttachWithFileBackingSeesTheCreatorsWrites) {
  TempDir dir;
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64, Backing::file(dir.path()));
  std::memcpy(owner.data(), "file-backed", 11);

  Segment attached = Segment::attach(name, Backing::file(dir.path()));

  EXPECT_EQ(std::memcmp(attached.data(), "file-backed", 11), 0);
  EXPECT_FALSE(attached.owns_name());
}

TEST(SegmentTest, DestructorRemovesAnOwnedFileBackedSegment) {
  TempDir dir;
  const std::string name = unique_name();

  { Segment seg = Segment::create(name, 64, Backing::file(dir.path())); }

  EXPECT_FALSE(std::filesystem::exists(dir / name));
}

TEST(SegmentTest, FileBackedAttacherNeverUnlinks) {
  TempDir dir;
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64, Backing::file(dir.path()));

  { Segment attached = Segment::attach(name, Backing::file(dir.path())); }

  EXPECT_TRUE(std::filesystem::exists(dir / name));
}

// ---- lifetime and ownership -----------------------------------------------------------------

TEST(SegmentTest, DestructorRemovesOwnedSegment) {
  const std::string name = unique_name();
  { Segment seg = Segment::create(name, 128); }
  EXPECT_FALSE(segment_exists(name));
}

TEST(SegmentTest, MappingOutlivesHandleAndName) {
  const std::string name = unique_name();
  std::shared_ptr<Mapping> mapping;
  {
    Segment seg = Segment::create(name, 64);
    std::memcpy(seg.data(), "abc", 3);
    mapping = seg.mapping();
  }
  EXPECT_FALSE(segment_exists(name));
  EXPECT_EQ(std::memcmp(mapping->data(), "abc", 3), 0);
}

TEST(SegmentTest, ReleaseNameKeepsTheSegmentAfterTheHandleIsDestroyed) {
  const std::string name = unique_name();
  {
    Segment seg = Segment::create(name, 64);
    std::memcpy(seg.data(), "kept", 4);

    seg.release_name();

    EXPECT_FALSE(seg.owns_name());
  }
  EXPECT_TRUE(segment_exists(name));
  EXPECT_EQ(std::memcmp(Segment::attach(name).data(), "kept", 4), 0);
  EXPECT_TRUE(remove_segment(name));
}

TEST(SegmentTest, RemoveNameRemovesTheNameNowButKeepsTheMapping) {
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 64);

  seg.remove_name();

  EXPECT_FALSE(segment_exists(name));
  EXPECT_FALSE(seg.owns_name());
  std::memcpy(seg.data(), "still mapped", 12);
  EXPECT_EQ(std::memcmp(seg.data(), "still mapped", 12), 0);
}

TEST(SegmentTest, RemoveNameOnAnAttacherDoesNothing) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  Segment attached = Segment::attach(name);

  attached.remove_name();

  EXPECT_TRUE(segment_exists(name));
}

TEST(SegmentTest, MoveConstructionTransfersOwnership) {
  const std::string name = unique_name();
  Segment source = Segment::create(name, 64);
  {
    Segment moved(std::move(source));

    EXPECT_TRUE(moved.owns_name());
    EXPECT_FALSE(source.owns_name());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  }
  EXPECT_FALSE(segment_exists(name));
}

TEST(SegmentTest, MoveAssignmentRemovesTheNameTheTargetOwned) {
  const std::string first = unique_name("first");
  const std::string second = unique_name("second");
  Segment target = Segment::create(first, 64);
  Segment source = Segment::create(second, 64);

  target = std::move(source);

  EXPECT_FALSE(segment_exists(first));
  EXPECT_TRUE(segment_exists(second));
  EXPECT_EQ(target.name(), second);
  EXPECT_TRUE(target.owns_name());
}

// ---- remove_segment / segment_exists --------------------------------------------------------

TEST(SegmentTest, RemoveSegmentRemovesAnExistingSegmentAndReturnsTrue) {
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 64);
  seg.release_name();

  EXPECT_TRUE(remove_segment(name));

  EXPECT_FALSE(segment_exists(name));
}

TEST(SegmentTest, RemoveSegmentReturnsFalseWhenTheNameIsAbsent) {
  EXPECT_FALSE(remove_segment(unique_name()));
}

TEST(SegmentTest, RemoveSegmentLeavesExistingMappingsValid) {
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 64);
  seg.release_name();
  Segment attached = Segment::attach(name);

  ASSERT_TRUE(remove_segment(name));

  std::memcpy(seg.data(), "shared", 6);
  EXPECT_EQ(std::memcmp(attached.data(), "shared", 6), 0);
}

TEST(SegmentTest, RemoveSegmentRemovesAFileBackedSegment) {
  TempDir dir;
  const std::string name = unique_name();
  Segment seg = Segment::create(name, 64, Backing::file(dir.path()));
  seg.release_name();

  EXPECT_TRUE(remove_segment(name, Backing::file(dir.path())));

  EXPECT_FALSE(std::filesystem::exists(dir / name));
  EXPECT_FALSE(remove_segment(name, Backing::file(dir.path())));
}

TEST(SegmentTest, RemoveSegmentRefusesASegmentOwnedByAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a segment to another uid";
  const std::string name = unique_name();
  const auto path = kShm / name;
  make_foreign_file(path, "theirs", 0666);
  const EntryCleanup cleanup(path);
  ASSERT_EQ(::chown(path.c_str(), kOtherUid, kOtherUid), 0);

  EXPECT_TRUE(throws_error([&] { (void)remove_segment(name); }, Errc::bad_input, {name, "owned by uid 65534", "refusing"}));

  EXPECT_TRUE(segment_exists(name));
}

TEST(SegmentTest, RemoveSegmentRefusesADirectory) {
  const std::string name = unique_name();
  const auto path = kShm / name;
  ASSERT_TRUE(std::filesystem::create_directory(path));
  const EntryCleanup cleanup(path);

  EXPECT_TRUE(throws_error([&] { (void)remove_segment(name); }, Errc::bad_input, {name, "not a regular file"}));

  EXPECT_TRUE(std::filesystem::is_directory(path));
}

TEST(SegmentTest, RemoveSegmentRefusesASymlinkAndLeavesItsTarget) {
  const std::string real = unique_name("real");
  Segment owner = Segment::create(real, 64);
  const std::string name = unique_name("link");
  const auto link = kShm / name;
  std::filesystem::create_symlink(kShm / real, link);
  const EntryCleanup cleanup(link);

  EXPECT_TRUE(throws_error([&] { (void)remove_segment(name); }, Errc::bad_input, {name, "not a regular file"}));

  EXPECT_TRUE(segment_exists(real));
}

TEST(SegmentTest, RemoveSegmentRejectsAPathInsteadOfAName) {
  for (const std::string_view name : {"../tmp", "a/b", ".", ".."}) {
    EXPECT_TRUE(throws_error([&] { (void)remove_segment(name); }, Errc::usage, {"segment name"})) << name;
  }
}

TEST(SegmentTest, SegmentExistsSeesSegmentsOfAnyKind) {
  const std::string name = unique_name();
  const std::string dangling = unique_name("dangling");
  const auto link = kShm / dangling;
  std::filesystem::create_symlink("/nonexistent/target", link);
  const EntryCleanup cleanup(link);

  EXPECT_FALSE(segment_exists(name));
  Segment seg = Segment::create(name, 64);
  EXPECT_TRUE(segment_exists(name));
  EXPECT_TRUE(segment_exists(dangling));
}

}  // namespace
}  // namespace tilepool
