// Kernel plugins: checking, loading (dlopen) and registering a plugin's kernels, once per file.
#include "tilepool/workers/plugin.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool {
namespace {

struct Loaded {
  LoadedPlugin plugin;
  dev_t device;
  ino_t inode;
};

struct Plugins {
  std::mutex mutex;
  std::list<Loaded> loaded;  // stable addresses: load_plugin returns references into it
};
Plugins& plugins() {
  static Plugins p;
  return p;
}

[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  throw Error(Errc::bad_input, fmt::format("plugin '{}': {}", escape_for_message(path), why));
}

// Another user could change code we would run: writable by group or others, or owned by
// neither us nor root. For the folder, a sticky bit (as /tmp's) keeps others from replacing
// our file, so only its owner matters then.
void check_not_writable_by_others(const std::string& path, const struct stat& st, const char* what) {
  const uid_t me = ::geteuid();
  if (st.st_uid != me && st.st_uid != 0) {
    refuse(path, fmt::format("{} is owned by uid {}, neither you (uid {}) nor root; refusing to load code another user "
                             "could have written",
                             what, st.st_uid, me));
  }
  const bool sticky_folder = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) != 0;
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !sticky_folder) {
    refuse(path, fmt::format("{} is writable by {} (mode {:04o}); refusing to load code another user could have written "
                             "(chmod go-w)",
                             what, (st.st_mode & S_IWOTH) != 0 ? "others" : "its group", st.st_mode & 07777));
  }
}

// What dlerror() says, without the path (our message names it already).
std::string dl_error(const std::string& canonical) {
  const char* e = ::dlerror();
  std::string s = e != nullptr ? e : "unknown dlopen error";
  if (s.starts_with(canonical + ": ")) s.erase(0, canonical.size() + 2);
  return s;
}

std::string origin_of(const KernelDef& existing) {
  const auto builtins = builtin_kernels();
  if (std::find(builtins.begin(), builtins.end(), &existing) != builtins.end()) return "a built-in kernel";
  for (const Loaded& l : plugins().loaded) {
    if (std::find(l.plugin.kernels.begin(), l.plugin.kernels.end(), &existing) != l.plugin.kernels.end()) {
      return fmt::format("a kernel of plugin '{}'", escape_for_message(l.plugin.path));
    }
  }
  return "a kernel the program registered";
}

// Checks the plugin's kernels against each other and every known kernel; registers them.
std::vector<const KernelDef*> register_plugin_kernels(const std::string& path, const tilepool_plugin& entry) {
  std::vector<const KernelDef*> kernels(entry.kernels, entry.kernels + entry.kernel_count);
  const std::vector<const KernelDef*> known = known_kernels();
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    const KernelDef* k = kernels[i];
    if (k == nullptr || k->name.empty() || k->output_spec == nullptr || k->iteration_shape == nullptr || k->bind == nullptr) {
      refuse(path, fmt::format("kernel {} of {} lacks a name, output_spec, iteration_shape or bind", i + 1, kernels.size()));
    }
    for (const KernelDef* other : known) {
      if (other->name == k->name) {
        refuse(path, fmt::format("kernel '{}' clashes with {} of that name", k->name, origin_of(*other)));
      }
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (kernels[j]->name == k->name) refuse(path, fmt::format("kernel '{}' is defined twice", k->name));
    }
  }
  for (const KernelDef* k : kernels) register_kernel(*k);
  return kernels;
}

}  // namespace

const LoadedPlugin& load_plugin(const std::string& path) {
  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  // Open first and check what we opened; then make sure dlopen mapped that same file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    refuse(path, err == ENOENT ? std::string("no such file") : std::strerror(err));
  }
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  ::close(fd);
  if (rc != 0) refuse(path, std::strerror(errno));
  for (const Loaded& l : p.loaded) {
    if (l.device == st.st_dev && l.inode == st.st_ino) return l.plugin;
  }
  if (!S_ISREG(st.st_mode)) refuse(path, "not a regular file (expected a shared library, lib<name>.so)");
  std::error_code ec;
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) refuse(path, ec.message());
  check_not_writable_by_others(path, st, "the file");
  struct stat folder {};
  const std::string folder_path = std::filesystem::path(canonical).parent_path().string();
  if (::stat(folder_path.c_str(), &folder) != 0) refuse(path, std::strerror(errno));
  check_not_writable_by_others(path, folder, fmt::format("its folder {}", escape_for_message(folder_path)).c_str());

  void* handle = ::dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) refuse(path, fmt::format("not a loadable shared library: {}", dl_error(canonical)));
  try {
    struct stat now {};
    if (::stat(canonical.c_str(), &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
      refuse(path, "the file changed while it was being loaded");
    }
    using Entry = const tilepool_plugin* (*)();
    auto* entry = reinterpret_cast<Entry>(::dlsym(handle, kPluginEntryPoint));
    if (entry == nullptr) {
      refuse(path, fmt::format("not a tilepool plugin: no entry point {} (define one with TILEPOOL_PLUGIN(...))",
                               kPluginEntryPoint));
    }
    const tilepool_plugin* plugin = entry();
    if (plugin == nullptr) refuse(path, fmt::format("{} returned nothing", kPluginEntryPoint));
    if (plugin->abi_version != kPluginAbiVersion) {
      refuse(path, fmt::format("built for plugin ABI version {}, but this tilepool has plugin ABI version {} (rebuild the "
                               "plugin against this tilepool)",
                               plugin->abi_version, kPluginAbiVersion));
    }
    std::vector<const KernelDef*> kernels = register_plugin_kernels(path, *plugin);
    p.loaded.push_back(Loaded{LoadedPlugin{canonical, std::move(kernels)}, st.st_dev, st.st_ino});
    return p.loaded.back().plugin;
  } catch (...) {
    ::dlclose(handle);
    throw;
  }
}

std::string plugin_path_of(const KernelDef& kernel) {
  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  for (const Loaded& l : p.loaded) {
    if (std::find(l.plugin.kernels.begin(), l.plugin.kernels.end(), &kernel) != l.plugin.kernels.end()) return l.plugin.path;
  }
  return {};
}

}  // namespace tilepool
