#include "tilepool/shared/fault_guard.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shared/child_process.hpp"
#include "shared/error_expectations.hpp"
#include "shared/small_tmpfs.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {
namespace {

using testing::died_of;
using testing::exited_cleanly;
using testing::run_in_child;
using testing::TempDir;
using testing::throws_error;
using testing::unique_name;

constexpr std::size_t kPage = 4096;

// Reads one byte the compiler cannot drop.
std::byte touch(const std::byte* p) { return *static_cast<const volatile std::byte*>(p); }
void poke(std::byte* p) { *static_cast<volatile std::byte*>(p) = std::byte{1}; }

// Shrinks a segment to `size` bytes, as `truncate -s` or numpy's open(..., 'wb') would.
void shrink(const Segment& seg, off_t size) {
  ASSERT_EQ(::truncate(seg.backing().path_of(seg.name()).c_str(), size), 0) << std::strerror(errno);
}

class FaultGuardTest : public ::testing::Test {
 protected:
  // A two-page segment that another "process" (the test) has truncated to `size` bytes.
  Segment shrunk_segment(off_t size, const Backing& backing = {}) {
    Segment seg = Segment::create(unique_name(), 2 * kPage, backing);
    std::memset(seg.data(), 7, seg.size());
    shrink(seg, size);
    return seg;
  }
};

// ---- faults inside a guard become errors ----------------------------------------------------

TEST_F(FaultGuardTest, ReadingASegmentThatShrankInsideAGuardThrowsAJobFailureNamingTheSegment) {
  const Segment seg = shrunk_segment(0);

  EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(seg.data() + kPage); }); }, Errc::job_failed,
                           {"segment '" + seg.name() + "' shrank under the job: it is now 0 bytes, the job needs 8192"}));
}

TEST_F(FaultGuardTest, AFileBackedSegmentThatShrankIsReportedWithItsNewSize) {
  TempDir dir;
  const Segment seg = shrunk_segment(kPage, Backing::file(dir.path()));

  EXPECT_EQ(guard_faults([&] { return touch(seg.data() + kPage - 1); }), std::byte{7});
  EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(seg.data() + kPage); }); }, Errc::job_failed,
                           {"segment '" + seg.name() + "' shrank under the job: it is now 4096 bytes, the job needs 8192"}));
}

TEST_F(FaultGuardTest, EveryLaterFaultIsCaughtToo) {
  const Segment seg = shrunk_segment(0);

  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(seg.data() + i); }); }, Errc::job_failed,
                             {seg.name()}))
        << "fault " << i;
  }
}

TEST_F(FaultGuardTest, WritingThroughAReadOnlyMappingInsideAGuardThrowsAndChangesNothing) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kPage);
  Segment reader = Segment::attach(name, {}, MapOptions{.read_only = true});

  EXPECT_TRUE(throws_error([&] { guard_faults([&] { poke(reader.data() + 10); }); }, Errc::job_failed,
                           {"segment '" + name + "' is read-only", "byte 10"}));
  EXPECT_EQ(owner.data()[10], std::byte{0});
}

TEST_F(FaultGuardTest, AGuardReturnsWhatTheCallReturns) {
  const Segment seg = Segment::create(unique_name(), kPage);
  seg.data()[5] = std::byte{42};

  EXPECT_EQ(guard_faults([&] { return touch(seg.data() + 5); }), std::byte{42});
  EXPECT_EQ(guard_faults([] { return std::string("whole"); }), "whole");
  const auto read_fifth = [&] { return touch(seg.data() + 5); };
  EXPECT_EQ(guard_faults(read_fifth), std::byte{42});
  int calls = 0;
  const auto count = [&calls] { ++calls; };
  guard_faults(count);
  EXPECT_EQ(calls, 1);
}

TEST_F(FaultGuardTest, AnExceptionFromTheCallPassesThroughTheGuardUnchanged) {
  EXPECT_THROW(guard_faults([] { throw std::out_of_range("kernel said no"); }), std::out_of_range);
}

TEST_F(FaultGuardTest, AnInnerGuardCatchesItsFaultAndTheOuterGuardStaysActive) {
  const Segment seg = shrunk_segment(0);
  std::string inner;

  EXPECT_TRUE(throws_error(
      [&] {
        guard_faults([&] {
          try {
            guard_faults([&] { (void)touch(seg.data()); });
          } catch (const Error& e) {
            inner = e.what();
          }
          (void)touch(seg.data() + kPage);
        });
      },
      Errc::job_failed, {seg.name(), "shrank"}));
  EXPECT_NE(inner.find(seg.name()), std::string::npos) << inner;
}

TEST_F(FaultGuardTest, GuardsOnSeveralThreadsEachReportTheirOwnSegment) {
  constexpr int kThreads = 4;
  std::vector<Segment> segments;
  for (int i = 0; i < kThreads; ++i) segments.push_back(shrunk_segment(0));
  std::vector<std::string> messages(kThreads);
  std::atomic<int> go{0};

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      go.fetch_add(1);
      while (go.load() < kThreads) {
      }
      for (int round = 0; round < 50; ++round) {
        try {
          guard_faults([&] { (void)touch(segments[static_cast<std::size_t>(i)].data() + kPage); });
        } catch (const Error& e) {
          messages[static_cast<std::size_t>(i)] = e.what();
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  for (int i = 0; i < kThreads; ++i) {
    EXPECT_NE(messages[static_cast<std::size_t>(i)].find("segment '" + segments[static_cast<std::size_t>(i)].name() + "'"),
              std::string::npos)
        << messages[static_cast<std::size_t>(i)];
  }
}

TEST_F(FaultGuardTest, TheRegistryHasNoFixedCapacity) {
  // A thousand other registered ranges (far more than one chunk of slots) before the segment's.
  void* reserved = ::mmap(nullptr, 1000 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(reserved, MAP_FAILED);
  {
    std::vector<FaultRegistration> others;
    for (std::size_t i = 0; i < 1000; ++i) {
      others.emplace_back(std::span(static_cast<const std::byte*>(reserved) + i * kPage, kPage), "other " + std::to_string(i),
                          -1, false);
    }
    const Segment seg = shrunk_segment(0);

    EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(seg.data()); }); }, Errc::job_failed,
                             {"segment '" + seg.name() + "' shrank"}));
  }
  ::munmap(reserved, 1000 * kPage);
}

TEST_F(FaultGuardTest, ARegisteredRangeWithoutADescriptorIsReportedByWhatItIsCalled) {
  TempDir dir;
  const auto path = dir / "data.bin";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kPage), 0);
  void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ::close(fd);
  {
    const FaultRegistration registration(std::span(static_cast<const std::byte*>(p), kPage), "input 'data\x1b[2J.bin'", -1,
                                         true);

    EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(static_cast<const std::byte*>(p) + 100); }); },
                             Errc::job_failed, {"input 'data\\x1b[2J.bin' shrank under the job: byte 100 of the 4096"}));
  }
  ::munmap(p, kPage);
}

// ---- everything else still dies of its signal -----------------------------------------------

TEST_F(FaultGuardTest, OutsideAGuardASegmentThatShrankStillKillsWithSigbus) {
  const Segment seg = shrunk_segment(0);

  const int status = run_in_child([&] {
    guard_faults([] {});  // the handler is installed
    (void)touch(seg.data());
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGBUS));
}

TEST_F(FaultGuardTest, OutsideAGuardAWriteToAReadOnlyMappingStillKillsWithSigsegv) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, kPage);
  Segment reader = Segment::attach(name, {}, MapOptions{.read_only = true});

  const int status = run_in_child([&] {
    guard_faults([] {});
    poke(reader.data());
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGSEGV));
  EXPECT_EQ(owner.data()[0], std::byte{0});
}

TEST_F(FaultGuardTest, InsideAGuardAFaultOnAnUnregisteredMappingStillKills) {
  TempDir dir;
  const auto path = dir / "unregistered.bin";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kPage), 0);
  void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_EQ(::ftruncate(fd, 0), 0);
  ::close(fd);

  const int status = run_in_child([&] {
    guard_faults([&] { (void)touch(static_cast<const std::byte*>(p)); });
    return 0;
  });
  ::munmap(p, kPage);

  EXPECT_TRUE(died_of(status, SIGBUS));
}

TEST_F(FaultGuardTest, InsideAGuardANullPointerWriteStillKills) {
  const int status = run_in_child([] {
    // Through a volatile pointer, so the compiler cannot see (and warn about) the bad address.
    std::byte* volatile near_null = reinterpret_cast<std::byte*>(std::uintptr_t{8});
    guard_faults([&] { poke(near_null); });
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGSEGV));
}

TEST_F(FaultGuardTest, AfterAGuardEndsByAnExceptionAFaultOutsideItStillKills) {
  const Segment seg = shrunk_segment(0);

  const int status = run_in_child([&] {
    try {
      guard_faults([] { throw std::runtime_error("kernel failed"); });
    } catch (const std::runtime_error&) {
    }
    (void)touch(seg.data());
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGBUS));
}

TEST_F(FaultGuardTest, AfterAGuardCaughtAFaultAFaultOutsideItStillKills) {
  const Segment seg = shrunk_segment(0);

  const int status = run_in_child([&] {
    try {
      guard_faults([&] { (void)touch(seg.data()); });
      return 3;  // the guard did not catch the fault
    } catch (const Error&) {
    }
    (void)touch(seg.data());
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGBUS));
}

TEST_F(FaultGuardTest, AGuardOnAnotherThreadDoesNotCatchThisThreadsFault) {
  const Segment seg = shrunk_segment(0);

  const int status = run_in_child([&] {
    std::atomic<bool> guarding{false};
    std::atomic<bool> stop{false};
    std::thread other([&] {
      guard_faults([&] {
        guarding = true;
        while (!stop) std::this_thread::yield();
      });
    });
    while (!guarding) std::this_thread::yield();
    (void)touch(seg.data());  // this thread has no guard
    stop = true;
    other.join();
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGBUS));
}

TEST_F(FaultGuardTest, ASignalSentWithKillIsNotMistakenForAFault) {
  const int status = run_in_child([] {
    guard_faults([] { ::raise(SIGBUS); });
    return 0;
  });

  EXPECT_TRUE(died_of(status, SIGBUS));
}


// ---- a page the filesystem has no room for ----------------------------------------------------

// A sparse file of `size` bytes (all holes) on a tmpfs, then the tmpfs filled to the last page.
class FullFilesystem {
 public:
  FullFilesystem() : tmpfs_("1m") {}
  [[nodiscard]] bool mounted() const { return tmpfs_.mounted(); }
  [[nodiscard]] const std::string& why() const { return tmpfs_.why(); }
  [[nodiscard]] std::filesystem::path sparse_file(std::size_t size) const {
    const auto path = tmpfs_.path() / "sparse.npy";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    ::close(fd);
    return path;
  }
  // Writes a filler file until the filesystem says ENOSPC.
  void fill() const {
    const auto path = tmpfs_.path() / "filler";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    const std::vector<char> chunk(kPage, 'f');
    while (::write(fd, chunk.data(), chunk.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    ::close(fd);
  }

 private:
  testing::SmallTmpfs tmpfs_;
};

TEST_F(FaultGuardTest, ReadingAHoleOfASparseInputOnAFullFilesystemIsNoSpaceNamingTheFile) {
  const FullFilesystem fs;
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const auto path = fs.sparse_file(64 * kPage);
  const Segment input = Segment::open_file(path, MapOptions{.populate = false, .read_only = true});
  fs.fill();

  EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(input.data() + 10 * kPage); }); }, Errc::no_space,
                           {path.string(), "no space left on device while reading its pages (the filesystem is full)"}));
}

TEST_F(FaultGuardTest, WritingAHoleOfAMappedOutputOnAFullFilesystemIsNoSpaceNotAShrunkFile) {
  const FullFilesystem fs;
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const auto path = fs.sparse_file(64 * kPage);
  const Segment output = Segment::open_file(path, MapOptions{.populate = false});
  fs.fill();

  try {
    guard_faults([&] { poke(output.data() + 20 * kPage); });
    FAIL() << "a write into a hole of a full filesystem did not fault";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(e.code(), Errc::no_space) << message;
    EXPECT_NE(message.find(path.string() + ": no space left on device while "), std::string::npos) << message;
    EXPECT_NE(message.find("(the filesystem is full)"), std::string::npos) << message;
    EXPECT_EQ(message.find("shrank"), std::string::npos) << message;
  }
}

TEST_F(FaultGuardTest, AFileThatShrankOnAFullFilesystemIsStillReportedAsShrunk) {
  const FullFilesystem fs;
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const auto path = fs.sparse_file(64 * kPage);
  const Segment input = Segment::open_file(path, MapOptions{.populate = false, .read_only = true});
  fs.fill();
  ASSERT_EQ(::truncate(path.c_str(), 0), 0);

  EXPECT_TRUE(throws_error([&] { guard_faults([&] { (void)touch(input.data() + 10 * kPage); }); }, Errc::job_failed,
                           {path.string(), "shrank under the job"}));
}

}  // namespace
}  // namespace tilepool
