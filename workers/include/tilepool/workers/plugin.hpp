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

#include <Eigen/Core>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tilepool/workers/kernel.hpp"

namespace tilepool {

/// The plugin ABI version: KernelDef's layout and the meaning of its members. A plugin built
/// against another version is refused. Bumped whenever KernelDef, BoundKernel or the types they
/// use change in a way that breaks compiled plugins. 2: kernels declare their parameters
/// (KernelDef::params), input_region sees them, and the entry point reports its C++ build.
inline constexpr std::uint32_t kPluginAbiVersion = 2;

}  // namespace tilepool

extern "C" {
/// The C++ build facts that must match between a plugin and tilepool for the types they share
/// (std::string, std::vector, Params, KernelDef, Eigen maps) to mean the same: a plugin that
/// differs in one is refused, naming it. Filled in the plugin's own translation unit by
/// TILEPOOL_PLUGIN_BUILD, so the values are what the plugin was compiled with.
struct tilepool_plugin_build {
  std::uint32_t string_abi;         ///< _GLIBCXX_USE_CXX11_ABI: 1 new std::string, 0 old; 2 not libstdc++
  std::uint32_t libstdcxx_release;  ///< _GLIBCXX_RELEASE (12 for g++ 12's headers); 0 not libstdc++
  std::uint32_t libstdcxx_debug;    ///< 1 with _GLIBCXX_DEBUG (checked containers: other layouts)
  std::uint32_t eigen_version;      ///< EIGEN_WORLD_VERSION * 10000 + EIGEN_MAJOR_VERSION * 100 + EIGEN_MINOR_VERSION
  std::uint32_t eigen_max_align;    ///< EIGEN_MAX_ALIGN_BYTES (what -march and EIGEN_DONT_ALIGN change)
  std::uint32_t pointer_bytes;      ///< sizeof(void*)
  std::uint32_t string_bytes;       ///< sizeof(std::string)
  std::uint32_t params_bytes;       ///< sizeof(tilepool::Params)
  std::uint32_t kernel_def_bytes;   ///< sizeof(tilepool::KernelDef)
  std::uint32_t any_array_bytes;    ///< sizeof(tilepool::AnyArray)
  std::uint32_t box_bytes;          ///< sizeof(tilepool::Box)
};

/// What a plugin's entry point returns. `abi_version` comes first and stays first in every
/// version, so that a loader can read it before trusting the rest.
struct tilepool_plugin {
  std::uint32_t abi_version;
  std::uint32_t kernel_count;
  const tilepool::KernelDef* const* kernels;
  const tilepool_plugin_build* build;  ///< since plugin ABI 2
};
}

#if defined(_GLIBCXX_RELEASE)
#define TILEPOOL_DETAIL_LIBSTDCXX_RELEASE _GLIBCXX_RELEASE
#else
#define TILEPOOL_DETAIL_LIBSTDCXX_RELEASE 0
#endif
#if !defined(__GLIBCXX__)
#define TILEPOOL_DETAIL_STRING_ABI 2
#elif _GLIBCXX_USE_CXX11_ABI
#define TILEPOOL_DETAIL_STRING_ABI 1
#else
#define TILEPOOL_DETAIL_STRING_ABI 0
#endif
#if defined(_GLIBCXX_DEBUG)
#define TILEPOOL_DETAIL_LIBSTDCXX_DEBUG 1
#else
#define TILEPOOL_DETAIL_LIBSTDCXX_DEBUG 0
#endif

/// The build facts of the translation unit it appears in (a tilepool_plugin_build initializer).
#define TILEPOOL_PLUGIN_BUILD                                                                            \
  tilepool_plugin_build {                                                                               \
    TILEPOOL_DETAIL_STRING_ABI, TILEPOOL_DETAIL_LIBSTDCXX_RELEASE, TILEPOOL_DETAIL_LIBSTDCXX_DEBUG,      \
        EIGEN_WORLD_VERSION * 10000 + EIGEN_MAJOR_VERSION * 100 + EIGEN_MINOR_VERSION, EIGEN_MAX_ALIGN_BYTES, \
        sizeof(void*), sizeof(std::string), sizeof(::tilepool::Params), sizeof(::tilepool::KernelDef),   \
        sizeof(::tilepool::AnyArray), sizeof(::tilepool::Box)                                            \
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

/// Loads the plugin at `path` and registers its kernels, so that find_kernel finds them in this
/// process. The file is opened once and read into a sealed in-memory copy (memfd; the file
/// itself where the system cannot make one) that stays open: what is loaded, and what the job's
/// workers load (pinned_plugin_of), is that copy, whatever the path holds later and even if the
/// file is rewritten in place. Loading a file that is loaded already (by any path) returns the
/// first load's result. Thread-safe. Plugins are never unloaded. (The plugin is loaded as
/// /proc/self/fd/N: `$ORIGIN` in its run path does not name its folder.)
///
/// Before loading it here, the plugin is loaded once in a child process (fork): a static
/// initializer that throws (which dlopen cannot pass on: the process would terminate), aborts
/// or exits fails that child, and the plugin is refused with what it printed.
///
/// Throws Error(bad_input), with a one-line message naming the file, and loads nothing, if:
/// the file is missing or not a regular file; another user could have written it (it, or the
/// folder holding it, is group- or world-writable (a sticky folder excepted), or owned by
/// neither this user nor root); it is not a shared library (or one whose symbols do not
/// resolve); loading it kills the process (its static initializers throw, abort or exit); it has
/// no `tilepool_plugin_entry`, or that throws; its ABI version differs from kPluginAbiVersion
/// ("was built for plugin ABI N; this tilepool needs M: rebuild it"); its C++ build differs in
/// one of tilepool_plugin_build's facts (naming each, with both values); or one of its kernels
/// has no name, output_spec, iteration_shape or bind, a parameter without a name or declared
/// twice, or a name that a known kernel (built-in, registered, from another plugin, or the
/// plugin itself) already has.
const LoadedPlugin& load_plugin(const std::string& path);

/// The canonical path of the plugin that provided `kernel`, or "" for a built-in kernel or one
/// a program registered itself. Thread-safe.
std::string plugin_path_of(const KernelDef& kernel);

/// How this process's workers load the plugin of `kernel`, for a job descriptor: a reference to
/// this process's open descriptor of the file it loaded, with that file's identity (device,
/// inode, size, modification time) and its path for messages. "" for a kernel of no plugin.
/// Thread-safe.
std::string pinned_plugin_of(const KernelDef& kernel);

/// Loads the plugin a runner pinned (pinned_plugin_of, made in the runner): its open copy, through
/// /proc/PID/fd, never the file its path names now. Throws Error(job_failed) naming the plugin
/// if that is no longer what the runner loaded (another size or modification time: possible
/// only where no sealed copy could be made), or as load_plugin. Thread-safe.
const LoadedPlugin& load_pinned_plugin(std::string_view reference);

}  // namespace tilepool

/// Defines a plugin's entry point, returning kPluginAbiVersion and the given kernels (one or
/// more KernelDef objects with static storage duration). Use once per plugin, at namespace
/// scope; with tilepool_add_kernel_plugin it is the plugin's only exported symbol.
#define TILEPOOL_PLUGIN(...)                                                                          \
  extern "C" __attribute__((visibility("default"))) const tilepool_plugin* tilepool_plugin_entry() { \
    static const auto tilepool_kernels_ = ::tilepool::plugin_kernel_list(__VA_ARGS__);               \
    static const tilepool_plugin_build tilepool_build_ = TILEPOOL_PLUGIN_BUILD;                       \
    static const tilepool_plugin tilepool_plugin_{::tilepool::kPluginAbiVersion,                      \
                                                  static_cast<std::uint32_t>(tilepool_kernels_.size()), \
                                                  tilepool_kernels_.data(), &tilepool_build_};        \
    return &tilepool_plugin_;                                                                         \
  }
