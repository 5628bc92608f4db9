#include "tilepool/shared/segment.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>

#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::unique_name;

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

TEST(SegmentTest, DestructorRemovesOwnedSegment) {
  const std::string name = unique_name();
  { Segment seg = Segment::create(name, 128); }
  EXPECT_FALSE(segment_exists(name));
}

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

TEST(SegmentTest, CreateFailsWhenNameExists) {
  const std::string name = unique_name();
  Segment owner = Segment::create(name, 64);
  try {
    (void)Segment::create(name, 64);
    FAIL() << "expected Error(exists)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::exists);
  }
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

}  // namespace
}  // namespace tilepool
