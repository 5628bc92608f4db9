#pragma once
// A real FUSE mount for one test (tests/support/passthrough_fuse.py through fusepy and
// /dev/fuse): a directory's files as a FUSE filesystem offers them, without O_TMPFILE,
// RENAME_NOREPLACE or hard links, and on request with reads or writes that fail as a network
// filesystem's do when its server goes away. Tests skip where FUSE cannot be mounted.

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace tilepool::testing {

/// Mounts passthrough_fuse.py over a fresh directory root() at path(), with the script's
/// `options` ("--fail-reads", "--fail-writes", "--fail-data-writes"); unmounts it and ends the
/// server on destruction. mounted() is false (and why() says why) when it could not mount.
class FuseMount {
 public:
  explicit FuseMount(const std::vector<std::string>& options = {}) : root_(dir_ / "root"), mount_point_(dir_ / "mnt") {
    std::filesystem::create_directory(root_);
    std::filesystem::create_directory(mount_point_);
    const std::string log = (dir_ / "server.log").string();
    const std::string script = std::string(TILEPOOL_SOURCE_DIR) + "/tests/support/passthrough_fuse.py";
    std::vector<std::string> args = {TILEPOOL_PYTHON, script, root_.string(), mount_point_.string()};
    args.insert(args.end(), options.begin(), options.end());
    server_ = ::fork();
    if (server_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    struct stat outside {};
    ::stat(dir_.path().c_str(), &outside);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      struct stat st {};
      if (::stat(mount_point_.c_str(), &st) == 0 && st.st_dev != outside.st_dev) {
        mounted_ = true;
        return;
      }
      int status = 0;
      if (::waitpid(server_, &status, WNOHANG) == server_) {
        server_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::ifstream f(log);
    why_ = "FUSE mount failed: " + std::string(std::istreambuf_iterator<char>(f), {});
  }
  FuseMount(const FuseMount&) = delete;
  FuseMount& operator=(const FuseMount&) = delete;
  ~FuseMount() {
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);  // the server then sees its device close and exits
    if (server_ > 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      int status = 0;
      while (::waitpid(server_, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
          ::kill(server_, SIGKILL);
          ::waitpid(server_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  [[nodiscard]] bool mounted() const noexcept { return mounted_; }
  [[nodiscard]] const std::string& why() const noexcept { return why_; }
  /// The mount point: where the job's files go.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return mount_point_; }
  /// The directory behind the mount, as the server keeps it (what a job left there is here).
  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

 private:
  TempDir dir_;
  std::filesystem::path root_;
  std::filesystem::path mount_point_;
  pid_t server_ = -1;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace tilepool::testing
