#pragma once
// A tiny tmpfs mounted for one test, to make "the backing store is full" happen for real.
// Needs CAP_SYS_ADMIN; tests skip when the mount is refused.

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "support/test_support.hpp"

namespace tilepool::testing {

/// Mounts a tmpfs of `size` (mount(8) syntax, e.g. "1m") on a fresh temporary directory;
/// unmounts it on destruction. mounted() is false (and why() says why) when mounting failed.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& size) : dir_(), mount_point_(dir_ / "mnt") {
    std::filesystem::create_directory(mount_point_);
    const std::string options = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0) {
      mounted_ = true;
    } else {
      why_ = std::string("mount -t tmpfs failed: ") + std::strerror(errno);
    }
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  ~SmallTmpfs() {
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);
  }

  [[nodiscard]] bool mounted() const noexcept { return mounted_; }
  [[nodiscard]] const std::string& why() const noexcept { return why_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return mount_point_; }

 private:
  TempDir dir_;
  std::filesystem::path mount_point_;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace tilepool::testing
