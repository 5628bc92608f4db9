#include "tilepool/shared/backing.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "shared/error_expectations.hpp"
#include "support/test_support.hpp"

namespace tilepool {
namespace {

using testing::error_message;
using testing::TempDir;
using testing::throws_error;

TEST(BackingTest, DefaultIsPosixSharedMemoryInDevShm) {
  const Backing b;

  EXPECT_TRUE(b.is_shm());
  EXPECT_EQ(b.directory(), "/dev/shm");
  EXPECT_EQ(b.path_of("abc"), "/dev/shm/abc");
  EXPECT_EQ(b.spec(), "shm");
}

TEST(BackingTest, FileBackingPutsSegmentsUnderItsDirectory) {
  const Backing b = Backing::file("/var/tmp/pool");

  EXPECT_FALSE(b.is_shm());
  EXPECT_EQ(b.directory(), "/var/tmp/pool");
  EXPECT_EQ(b.path_of("abc"), "/var/tmp/pool/abc");
  EXPECT_EQ(b.spec(), "file:/var/tmp/pool");
}

TEST(BackingTest, ParseAcceptsShm) {
  EXPECT_EQ(Backing::parse("shm"), Backing{});
}

TEST(BackingTest, ParseAcceptsFileWithAnExistingDirectory) {
  TempDir dir;

  const Backing b = Backing::parse("file:" + dir.path().string());

  EXPECT_EQ(b, Backing::file(dir.path()));
}

TEST(BackingTest, SpecParsesBackToTheSameBacking) {
  TempDir dir;
  const Backing file = Backing::file(dir.path());

  EXPECT_EQ(Backing::parse(file.spec()), file);
  EXPECT_EQ(Backing::parse(Backing{}.spec()), Backing{});
}

TEST(BackingTest, ParseRejectsAFileSpecWhoseDirectoryIsMissing) {
  TempDir dir;
  const std::string missing = (dir / "missing").string();

  EXPECT_TRUE(throws_error([&] { (void)Backing::parse("file:" + missing); }, Errc::usage,
                           {"file backing", missing, "is not a directory"}));
}

TEST(BackingTest, ParseRejectsAFileSpecNamingARegularFile) {
  TempDir dir;
  const auto file = dir / "plain";
  { std::ofstream(file) << "x"; }

  EXPECT_TRUE(throws_error([&] { (void)Backing::parse("file:" + file.string()); }, Errc::usage, {"is not a directory"}));
}

TEST(BackingTest, ParseRejectsMalformedSpecs) {
  for (const std::string_view spec : {"", "SHM", "shm:", "shm ", "file", "file:", "tmpfs", "dir:/tmp", "File:/tmp"}) {
    EXPECT_TRUE(throws_error([&] { (void)Backing::parse(spec); }, Errc::usage,
                             {"unknown backing '" + std::string(spec) + "'", "expected shm or file:DIR"}))
        << "'" << spec << "'";
  }
}

TEST(BackingTest, ParseErrorsNameNoCommandLineFlag) {
  TempDir dir;
  for (const std::string& spec : {std::string("tape"), "file:" + (dir / "missing").string()}) {
    const std::string message = error_message([&] { (void)Backing::parse(spec); });

    EXPECT_NE(message, "(no error)") << spec;
    EXPECT_EQ(message.find("--"), std::string::npos) << message;
  }
}

TEST(BackingTest, ValidateSegmentNameAcceptsPortableNames) {
  for (const std::string& name : {std::string("a"), std::string("tilepool-123-in.npy"), std::string("A_z-0.9"),
                                  std::string("x."), std::string(200, 'n')}) {
    EXPECT_NO_THROW(validate_segment_name(name)) << name;
  }
}

TEST(BackingTest, ValidateSegmentNameRejectsNamesThatAreNotPlainFileNames) {
  for (const std::string& name :
       {std::string(""), std::string("a/b"), std::string("/abs"), std::string(".x"), std::string(".."),
        std::string("."), std::string("../etc/passwd"), std::string(201, 'n'), std::string("a b"),
        std::string("semi;colon"), std::string("tab\t"), std::string("nul\0byte", 8), std::string("caf\xc3\xa9")}) {
    EXPECT_TRUE(throws_error([&] { validate_segment_name(name); }, Errc::usage, {"segment name"}))
        << "'" << name << "'";
  }
}

}  // namespace
}  // namespace tilepool
