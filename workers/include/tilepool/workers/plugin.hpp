#pragma once
/// @file
/// Kernel plugins: a shared library (built with tilepool_add_kernel_plugin) whose one exported
/// symbol, `tilepool_plugin_entry`, returns the plugin ABI version it was built against and its
/// kernels. A plugin source file ends with
///
///   TILEPOOL_PLUGIN(kNdvi, kOtherKernel);      // KernelDefs with static storage duration
///
/// and a user runs `tilepool run --plugin ./libmine.so --kernel ndvi ...`. The runner loads the
/// plugin with load_plugin(); each job carries the plugin file of its kernel to the processes
/// that run tiles (share-mode workers load it when they first get a job of it, copy-mode
/// workers with the job's setup; fork-mode workers inherit it, threads share it).

#include <array>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// The plugin ABI version: KernelDef's layout and the meaning of its members. A plugin built
/// against another version is refused. Bumped whenever KernelDef, BoundKernel or the types they
/// use change in a way that breaks compiled plugins.
inline constexpr std::uint32_t kPluginAbiVersion = 1;

}  // namespace tilepool

extern "C" {
/// What a plugin's entry point returns. `abi_version` comes first and stays first in every
/// version, so that a loader can read it before trusting the rest.
struct tilepool_plugin {
  std::uint32_t abi_version;
  std::uint32_t kernel_count;
  const tilepool::KernelDef* const* kernels;
};
}

namespace tilepool {

/// The name of a plugin's entry point: `extern "C" const tilepool_plugin* tilepool_plugin_entry()`.
inline constexpr const char* kPluginEntryPoint = "tilepool_plugin_entry";

/// The kernels of TILEPOOL_PLUGIN(...) as an array of pointers.
template <class... Kernels>
constexpr std::array<const KernelDef*, sizeof...(Kernels)> plugin_kernel_list(const Kernels&... kernels) noexcept {
  static_assert((std::is_same_v<Kernels, KernelDef> && ...), "TILEPOOL_PLUGIN takes KernelDef objects");
  return {&kernels...};
}

/// A loaded plugin: its file (canonical path) and the kernels it registered.
struct LoadedPlugin {
  std::string path;
  std::vector<const KernelDef*> kernels;
};

/// Loads the plugin at `path` (dlopen RTLD_NOW|RTLD_LOCAL) and registers its kernels, so that
/// find_kernel finds them in this process. Loading a file that is loaded already (by any path)
/// returns the first load's result. Thread-safe. Plugins are never unloaded.
///
/// Throws Error(bad_input), with a one-line message naming the file, and loads nothing, if:
/// the file is missing or not a regular file; another user could have written it (it, or the
/// folder holding it, is group- or world-writable (a sticky folder excepted), or owned by
/// neither this user nor root); it is not a shared library (or one whose symbols do not
/// resolve); it has no `tilepool_plugin_entry`; its ABI version differs from kPluginAbiVersion
/// (naming both); or one of its kernels has no name, output_spec, iteration_shape or bind, or
/// a name that a known kernel (built-in, registered, from another plugin, or the plugin itself)
/// already has.
const LoadedPlugin& load_plugin(const std::string& path);

/// The canonical path of the plugin that provided `kernel`, or "" for a built-in kernel or one
/// a program registered itself. Thread-safe.
std::string plugin_path_of(const KernelDef& kernel);

}  // namespace tilepool

/// Defines a plugin's entry point, returning kPluginAbiVersion and the given kernels (one or
/// more KernelDef objects with static storage duration). Use once per plugin, at namespace
/// scope; with tilepool_add_kernel_plugin it is the plugin's only exported symbol.
#define TILEPOOL_PLUGIN(...)                                                                          \
  extern "C" __attribute__((visibility("default"))) const tilepool_plugin* tilepool_plugin_entry() { \
    static const auto tilepool_kernels_ = ::tilepool::plugin_kernel_list(__VA_ARGS__);               \
    static const tilepool_plugin tilepool_plugin_{::tilepool::kPluginAbiVersion,                      \
                                                  static_cast<std::uint32_t>(tilepool_kernels_.size()), \
                                                  tilepool_kernels_.data()};                          \
    return &tilepool_plugin_;                                                                         \
  }
