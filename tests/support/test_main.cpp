// The test binaries' main: GoogleTest plus a check, after every test, that the test left
// nothing of this process in /dev/shm (a leaked segment fails the test that leaked it).
#include <gtest/gtest.h>

#include <filesystem>

#include "support/test_support.hpp"
#include "tilepool/workers/worker.hpp"

namespace {

class ShmLeakCheck : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const auto left = tilepool::testing::leftovers();
    for (const auto& name : left) {
      ADD_FAILURE() << info.test_suite_name() << "." << info.name() << " left /dev/shm/" << name;
      std::error_code ec;
      std::filesystem::remove(std::filesystem::path("/dev/shm") / name, ec);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  // A pool may start this program as its worker (tests of kernels registered in-process).
  if (const auto status = tilepool::serve_as_worker_if_asked(argc, argv)) return *status;
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::UnitTest::GetInstance()->listeners().Append(new ShmLeakCheck);
  return RUN_ALL_TESTS();
}
