// publish_segment and Segment::publish: a finished segment moves onto the user's name in one
// step, never overwriting it unless asked, and a replaced object stays valid for its readers.
// Every test runs with both backings.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "shared/error_expectations.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {
namespace {

using testing::TempDir;
using testing::throws_error;
using testing::unique_name;

// Removes a name that no handle owns (a published segment), whatever the test's outcome.
class RemoveOnExit {
 public:
  RemoveOnExit(std::string name, Backing backing) : name_(std::move(name)), backing_(std::move(backing)) {}
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  ~RemoveOnExit() {
    std::error_code ec;
    std::filesystem::remove(backing_.path_of(name_), ec);
  }

 private:
  std::string name_;
  Backing backing_;
};

class PublishSegmentTest : public ::testing::TestWithParam<const char*> {
 protected:
  [[nodiscard]] Backing backing() const {
    return std::string_view(GetParam()) == "shm" ? Backing{} : Backing::file(dir_.path());
  }
  [[nodiscard]] std::filesystem::path path(const std::string& name) const { return backing().path_of(name); }

  // A finished, job-owned segment holding `text`.
  Segment finished(const std::string& text, std::size_t size = 4096) {
    Segment seg = Segment::create(unique_name("job"), size, backing());
    std::memcpy(seg.data(), text.data(), text.size());
    return seg;
  }

  // The user's existing segment under `name`, holding `text`; removed at the end of the test.
  void existing(const std::string& name, const std::string& text) {
    Segment seg = Segment::create(name, 4096, backing());
    std::memcpy(seg.data(), text.data(), text.size());
    seg.release_name();
  }

  [[nodiscard]] bool holds(const std::string& name, const std::string& text) const {
    const Segment seg = Segment::attach(name, backing(), MapOptions{.read_only = true});
    return std::memcmp(seg.data(), text.data(), text.size()) == 0;
  }

  TempDir dir_;
};

TEST_P(PublishSegmentTest, PublishMovesTheSegmentOntoTheNewName) {
  Segment job = finished("result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());

  publish_segment(job.name(), to, backing(), /*replace=*/false);

  EXPECT_FALSE(segment_exists(job.name(), backing()));
  EXPECT_TRUE(holds(to, "result"));
  EXPECT_EQ(Segment::attach(to, backing()).identity(), job.identity());
}

TEST_P(PublishSegmentTest, PublishWithoutReplaceRefusesAnExistingNameAndLeavesBothAsTheyWere) {
  Segment job = finished("new result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  existing(to, "old result");

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), to, backing(), /*replace=*/false); }, Errc::exists,
                           {"segment '" + to + "'", "already exists"}));

  EXPECT_TRUE(holds(to, "old result"));
  EXPECT_TRUE(holds(job.name(), "new result"));
}

TEST_P(PublishSegmentTest, PublishWithoutReplaceRefusesAnyEntryUnderTheName) {
  Segment job = finished("new result");
  const std::string to = unique_name("out");
  std::filesystem::create_symlink("/nonexistent/target", path(to));
  const RemoveOnExit cleanup(to, backing());

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), to, backing(), /*replace=*/false); }, Errc::exists));

  EXPECT_TRUE(std::filesystem::is_symlink(path(to)));
  EXPECT_TRUE(segment_exists(job.name(), backing()));
}

TEST_P(PublishSegmentTest, PublishWithReplaceReplacesTheOldObject) {
  Segment job = finished("new result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  existing(to, "old result");

  publish_segment(job.name(), to, backing(), /*replace=*/true);

  EXPECT_TRUE(holds(to, "new result"));
  EXPECT_FALSE(segment_exists(job.name(), backing()));
}

TEST_P(PublishSegmentTest, AReaderOfTheReplacedObjectKeepsItsDataAfterAReplace) {
  Segment job = finished("new result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  existing(to, "old result");
  const Segment reader = Segment::attach(to, backing(), MapOptions{.read_only = true});

  publish_segment(job.name(), to, backing(), /*replace=*/true);

  EXPECT_EQ(std::memcmp(reader.data(), "old result", 10), 0);
  EXPECT_EQ(reader.data()[4095], std::byte{0});  // the whole old mapping is still there
  EXPECT_NE(Segment::attach(to, backing()).identity(), reader.identity());
}

TEST_P(PublishSegmentTest, PublishWithReplaceOntoAFreeNameJustMovesTheSegment) {
  Segment job = finished("result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());

  publish_segment(job.name(), to, backing(), /*replace=*/true);

  EXPECT_TRUE(holds(to, "result"));
}

TEST_P(PublishSegmentTest, PublishWithReplaceRefusesToReplaceADirectory) {
  Segment job = finished("result");
  const std::string to = unique_name("out");
  std::filesystem::create_directory(path(to));
  const RemoveOnExit cleanup(to, backing());

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), to, backing(), /*replace=*/true); }, Errc::bad_input,
                           {to, "not a regular file"}));

  EXPECT_TRUE(std::filesystem::is_directory(path(to)));
  EXPECT_TRUE(segment_exists(job.name(), backing()));
}

TEST_P(PublishSegmentTest, PublishWithReplaceRefusesToReplaceASymlink) {
  Segment job = finished("result");
  const std::string to = unique_name("out");
  std::filesystem::create_symlink(path(job.name()), path(to));
  const RemoveOnExit cleanup(to, backing());

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), to, backing(), /*replace=*/true); }, Errc::bad_input,
                           {to, "not a regular file"}));

  EXPECT_TRUE(std::filesystem::is_symlink(path(to)));
}

TEST_P(PublishSegmentTest, PublishWithReplaceRefusesToReplaceAnotherUsersFile) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another uid";
  Segment job = finished("result");
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  existing(to, "theirs");
  ASSERT_EQ(::chown(path(to).c_str(), 65534, 65534), 0);

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), to, backing(), /*replace=*/true); }, Errc::bad_input,
                           {to, "owned by uid 65534"}));
}

TEST_P(PublishSegmentTest, PublishRefusesASourceThatDoesNotExist) {
  const std::string from = unique_name("job");
  const std::string to = unique_name("out");

  EXPECT_TRUE(throws_error([&] { publish_segment(from, to, backing(), /*replace=*/true); }, Errc::bad_input,
                           {from, "does not exist"}));

  EXPECT_FALSE(segment_exists(to, backing()));
}

TEST_P(PublishSegmentTest, PublishRefusesASourceThatIsASymlink) {
  Segment real = finished("result");
  const std::string from = unique_name("link");
  std::filesystem::create_symlink(path(real.name()), path(from));
  const RemoveOnExit cleanup(from, backing());
  const std::string to = unique_name("out");

  EXPECT_TRUE(throws_error([&] { publish_segment(from, to, backing(), /*replace=*/false); }, Errc::bad_input,
                           {from, "not a regular file"}));

  EXPECT_FALSE(segment_exists(to, backing()));
}

TEST_P(PublishSegmentTest, PublishRefusesASourceThatIsNoLongerTheExpectedObject) {
  Segment job = finished("result");
  const SegmentIdentity pinned = job.identity();
  job.remove_name();
  Segment impostor = Segment::create(job.name(), 4096, backing());
  const std::string to = unique_name("out");

  EXPECT_TRUE(throws_error([&] { publish_segment(impostor.name(), to, backing(), /*replace=*/true, pinned); },
                           Errc::bad_input, {"segment '" + impostor.name() + "' was replaced or resized"}));

  EXPECT_FALSE(segment_exists(to, backing()));
}

TEST_P(PublishSegmentTest, PublishRejectsInvalidNames) {
  Segment job = finished("result");

  EXPECT_TRUE(throws_error([&] { publish_segment(job.name(), "../escape", backing(), false); }, Errc::usage, {"segment name"}));
  EXPECT_TRUE(throws_error([&] { publish_segment("a/b", "fine", backing(), false); }, Errc::usage, {"segment name"}));
}

TEST_P(PublishSegmentTest, SegmentPublishRenamesTheHandleAndGivesUpTheName) {
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  {
    Segment job = finished("result");

    job.publish(to, /*replace=*/false);

    EXPECT_EQ(job.name(), to);
    EXPECT_FALSE(job.owns_name());
  }
  EXPECT_TRUE(holds(to, "result"));  // destroying the handle removed nothing
}

TEST_P(PublishSegmentTest, SegmentPublishThatFailsLeavesTheHandleOwningItsName) {
  const std::string to = unique_name("out");
  const RemoveOnExit cleanup(to, backing());
  existing(to, "old result");
  Segment job = finished("result");
  const std::string from = job.name();

  EXPECT_THROW(job.publish(to, /*replace=*/false), Error);

  EXPECT_EQ(job.name(), from);
  EXPECT_TRUE(job.owns_name());
  EXPECT_TRUE(holds(to, "old result"));
}

TEST_P(PublishSegmentTest, SegmentPublishNeedsTheCreatorsHandle) {
  Segment job = finished("result");
  Segment attached = Segment::attach(job.name(), backing());

  EXPECT_TRUE(throws_error([&] { attached.publish(unique_name("out"), false); }, Errc::usage, {"creator"}));
}

INSTANTIATE_TEST_SUITE_P(Backings, PublishSegmentTest, ::testing::Values("shm", "file"),
                         [](const auto& param_info) { return std::string(param_info.param); });

}  // namespace
}  // namespace tilepool
