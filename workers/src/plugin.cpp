// Kernel plugins: checking, loading (dlopen) and registering a plugin's kernels, once per file.
#include "tilepool/workers/plugin.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/shared/unique_fd.hpp"

namespace tilepool {
namespace {

// What pins a plugin file: a rename over its path changes the inode, a rewrite in place the
// size or the modification time.
struct FileIdentity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};

FileIdentity identity_of(const struct stat& st) {
  return FileIdentity{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino), static_cast<std::int64_t>(st.st_size),
                      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

struct Loaded {
  LoadedPlugin plugin;
  FileIdentity identity;  // of what was loaded: the private copy (or the file if none could be made)
  UniqueFd fd;            // open for the life of the process: workers load it through /proc/PID/fd
  FileIdentity source;    // of the user's file, when it was read
};

struct Plugins {
  std::mutex mutex;
  std::list<Loaded> loaded;  // stable addresses: load_plugin returns references into it
};
Plugins& plugins() {
  static Plugins p;
  return p;
}

[[noreturn]] void refuse(const std::string& path, const std::string& why, Errc code = Errc::bad_input) {
  throw Error(code, fmt::format("plugin '{}': {}", escape_for_message(path), why));
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

// What dlerror() says, without the path we opened (our message names the plugin already).
std::string dl_error(const std::string& opened) {
  const char* e = ::dlerror();
  std::string s = e != nullptr ? e : "unknown dlopen error";
  if (s.starts_with(opened + ": ")) s.erase(0, opened.size() + 2);
  return escape_for_message(s);
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
  if (entry.kernel_count > 0 && entry.kernels == nullptr) refuse(path, "its entry point lists no kernels array");
  std::vector<const KernelDef*> kernels(entry.kernels, entry.kernels + entry.kernel_count);
  const std::vector<const KernelDef*> known = known_kernels();
  for (std::size_t i = 0; i < kernels.size(); ++i) {
    const KernelDef* k = kernels[i];
    if (k == nullptr || k->name.empty() || k->output_spec == nullptr || k->iteration_shape == nullptr || k->bind == nullptr) {
      refuse(path, fmt::format("kernel {} of {} lacks a name, output_spec, iteration_shape or bind", i + 1, kernels.size()));
    }
    // A name is typed after -k and printed in tables: a space or a control character in it (a
    // line break split `tilepool kernels`' table) makes a kernel no one can name.
    if (std::any_of(k->name.begin(), k->name.end(), [](char c) { return std::isgraph(static_cast<unsigned char>(c)) == 0; })) {
      refuse(path, fmt::format("kernel name '{}' has a space or a control character (expected a word such as my_filter)",
                               escape_for_message(k->name)));
    }
    // A job has at least one input (`tilepool run` requires -i): a kernel of no inputs could be
    // listed but never run.
    if (k->arity < 1) refuse(path, fmt::format("kernel '{}' takes {} inputs (a kernel takes at least 1)", k->name, k->arity));
    for (std::size_t p = 0; p < k->params.size(); ++p) {
      if (k->params[p].name.empty()) refuse(path, fmt::format("kernel '{}': parameter {} has no name", k->name, p + 1));
      for (std::size_t q = 0; q < p; ++q) {
        if (k->params[q].name == k->params[p].name) {
          refuse(path, fmt::format("kernel '{}' declares parameter '{}' twice", k->name, k->params[p].name));
        }
      }
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

// The facts of tilepool_plugin_build that differ between the plugin and this tilepool, named,
// with the remedy: "" when they all match.
std::string build_differences(const tilepool_plugin_build& plugin) {
  static const tilepool_plugin_build mine = TILEPOOL_PLUGIN_BUILD;
  const auto string_abi = [](std::uint32_t v) -> std::string {
    return v == 1 ? "the new (_GLIBCXX_USE_CXX11_ABI=1)" : v == 0 ? "the old (_GLIBCXX_USE_CXX11_ABI=0)" : "no libstdc++";
  };
  std::string out;
  const auto differ = [&out](std::string text) { out += fmt::format("{}{}", out.empty() ? "" : "; ", text); };
  if (plugin.string_abi != mine.string_abi) {
    differ(fmt::format("it was built with {} libstdc++ string ABI, this tilepool with {} one, so std::string (and the "
                       "parameters it holds) differ between them",
                       string_abi(plugin.string_abi), string_abi(mine.string_abi)));
  }
  const auto fact = [&](const char* what, std::uint32_t theirs, std::uint32_t ours) {
    if (theirs != ours) differ(fmt::format("{} is {} in the plugin, {} in this tilepool", what, theirs, ours));
  };
  fact("the libstdc++ release (_GLIBCXX_RELEASE)", plugin.libstdcxx_release, mine.libstdcxx_release);
  fact("_GLIBCXX_DEBUG", plugin.libstdcxx_debug, mine.libstdcxx_debug);
  fact("the Eigen version", plugin.eigen_version, mine.eigen_version);
  fact("EIGEN_MAX_ALIGN_BYTES", plugin.eigen_max_align, mine.eigen_max_align);
  fact("sizeof(void*)", plugin.pointer_bytes, mine.pointer_bytes);
  // With the facts above equal these follow; they catch what no flag above names.
  if (out.empty()) {
    fact("sizeof(std::string)", plugin.string_bytes, mine.string_bytes);
    fact("sizeof(tilepool::Params)", plugin.params_bytes, mine.params_bytes);
    fact("sizeof(tilepool::KernelDef)", plugin.kernel_def_bytes, mine.kernel_def_bytes);
    fact("sizeof(tilepool::AnyArray)", plugin.any_array_bytes, mine.any_array_bytes);
    fact("sizeof(tilepool::Box)", plugin.box_bytes, mine.box_bytes);
  }
  return out;
}

// Loads the plugin once in a child process, whose stderr we keep: a static initializer that
// throws cannot be caught around dlopen (the exception cannot unwind through the dynamic
// loader, so the process terminates), and one that aborts or exits ends the process. Measured:
// `throw "text"` in a plugin's global constructor made dlopen's caller exit 134 with
// "terminate called after throwing an instance of 'char const*'". Returns why the child failed,
// or nothing if loading (and the entry point) went through.
std::optional<std::string> probe_failure(int fd) {
  // The child's status when loading went through: not 0, so that a static initializer that
  // calls exit(0) is a failure too.
  constexpr int kLoaded = 75;
  PipeEnds output = make_cloexec_pipe();  // the child's stderr
  if (!output.read) throw system_error("pipe2 for a plugin probe", errno);
  const std::string self_path = fmt::format("/proc/self/fd/{}", fd);
  const pid_t pid = ::fork();
  if (pid < 0) throw system_error("fork for a plugin probe", errno);
  if (pid == 0) {
    // The child dies of the user's Ctrl-C (the terminal signals the whole process group) even
    // while a static initializer hangs; the runner's own handlers only note a signal.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
      ::signal(sig, SIG_DFL);
      sigaddset(&stop_signals, sig);
    }
    ::sigprocmask(SIG_UNBLOCK, &stop_signals, nullptr);
    // What the plugin prints goes to the pipe (stderr) or nowhere (stdout).
    ::dup2(output.write.get(), STDERR_FILENO);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDOUT_FILENO);
    void* handle = ::dlopen(self_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      using Entry = const tilepool_plugin* (*)();
      if (auto* entry = reinterpret_cast<Entry>(::dlsym(handle, kPluginEntryPoint)); entry != nullptr) {
        try {
          (void)entry();
        } catch (...) {  // the parent's own call reports it
        }
      }
    }
    ::_exit(kLoaded);  // no atexit handlers, no static destructors of the parent's state
  }
  output.write.reset();
  std::string said;
  char buf[1024];
  int status = 0;
  bool reaped = false;  // by the look for a stopped child below, when it had just died
  for (;;) {
    // A stop signal sent to this process alone (kill -INT PID, not the terminal's process
    // group) is passed on to the child, which dies of it as the group's would kill it (again
    // each time round: the first may come before the child reset its handlers).
    // SIGCONT after it: a child that stopped itself (raise(SIGSTOP) in a static initializer)
    // acts on the signal only once it runs.
    if (const int sig = stop_signal(); sig != 0 && !reaped) {  // a reaped pid may be another process's now
      ::kill(pid, sig);
      ::kill(pid, SIGCONT);
    }
    pollfd readable{.fd = output.read.get(), .events = POLLIN, .revents = 0};
    if (!reaped && ::poll(&readable, 1, 50) <= 0) {  // a timeout or EINTR: look at the signal again
      int stopped = 0;
      if (::waitpid(pid, &stopped, WNOHANG | WUNTRACED) != pid) continue;
      if (!WIFSTOPPED(stopped)) {
        // It ended between the poll and this look (a signal to the group): that was its
        // status, and waiting for it again would fail (ECHILD) and read as "exited, status 0".
        // What it wrote before it ended is read below, never waited for (a process it
        // started may hold the pipe).
        status = stopped;
        reaped = true;
        (void)::fcntl(output.read.get(), F_SETFL, O_NONBLOCK);
        continue;
      }
      // Loading it stopped the process: it would wait for good. Ended, and refused as such.
      ::kill(pid, SIGKILL);
      output.read.reset();
      (void)retry_on_eintr([&] { return ::waitpid(pid, nullptr, 0); });
      return fmt::format("loading it stops the process (signal {} ({})): its static initializers stopped it",
                         WSTOPSIG(stopped), ::strsignal(WSTOPSIG(stopped)));
    }
    const ssize_t n = retry_on_eintr([&] { return ::read(output.read.get(), buf, sizeof buf); });
    if (n <= 0) break;
    if (said.size() < 4096) said.append(buf, static_cast<std::size_t>(n));
  }
  output.read.reset();
  if (!reaped) (void)retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
  if (WIFEXITED(status) && WEXITSTATUS(status) == kLoaded) return std::nullopt;
  if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGHUP)) {
    // The user's signal, not the plugin's failure.
    throw Error(Errc::interrupted, fmt::format("interrupted by SIG{} while loading the plugin", sigabbrev_np(WTERMSIG(status))));
  }
  // Its first line is the useful one ("terminate called after throwing an instance of 'char const*'").
  std::string first = said.substr(0, said.find('\n'));
  if (const auto what = said.find("what():"); what != std::string::npos) {
    first += fmt::format(" ({})", said.substr(what, said.find('\n', what) - what));
  }
  const std::string how = WIFSIGNALED(status) ? fmt::format("signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)))
                                              : fmt::format("it exited, status {}", WEXITSTATUS(status));
  return fmt::format("loading it ends the process ({}): its static initializers {}{}", how,
                     WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT ? "threw or aborted" : "failed",
                     first.empty() ? std::string() : fmt::format(": {}", escape_for_message(first)));
}

// Loads the plugin file open on `fd` (ours from now on) whose path for messages is `path` and
// whose real path is `canonical`. Called with the registry's mutex held.
const LoadedPlugin& load_open_file(UniqueFd file, const FileIdentity& identity, const FileIdentity& source, const std::string& path,
                                   const std::string& canonical, bool probe) {
  Plugins& p = plugins();
  const int fd = file.get();
  if (probe) {
    if (auto failure = probe_failure(fd)) refuse(path, *failure);
  }
  const std::string self_path = fmt::format("/proc/self/fd/{}", fd);
  void* handle = ::dlopen(self_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) refuse(path, fmt::format("not a loadable shared library: {}", dl_error(self_path)));
  try {
    struct stat now {};
    if (::fstat(fd, &now) != 0 || !(identity_of(now) == identity)) refuse(path, "the file changed while it was being loaded");
    using Entry = const tilepool_plugin* (*)();
    auto* entry = reinterpret_cast<Entry>(::dlsym(handle, kPluginEntryPoint));
    if (entry == nullptr) {
      refuse(path, fmt::format("not a tilepool plugin: no entry point {} (define one with TILEPOOL_PLUGIN(...))",
                               kPluginEntryPoint));
    }
    const tilepool_plugin* plugin = nullptr;
    try {
      plugin = entry();
    } catch (...) {
      refuse(path, fmt::format("its entry point {} threw: {}", kPluginEntryPoint, describe_current_exception()));
    }
    if (plugin == nullptr) refuse(path, fmt::format("{} returned nothing", kPluginEntryPoint));
    if (plugin->abi_version != kPluginAbiVersion) {
      refuse(path, fmt::format("was built for plugin ABI {}; this tilepool needs {}: rebuild it against this tilepool",
                               plugin->abi_version, kPluginAbiVersion));
    }
    if (plugin->build == nullptr) refuse(path, "its entry point reports no build facts (define it with TILEPOOL_PLUGIN(...))");
    if (const std::string differs = build_differences(*plugin->build); !differs.empty()) {
      refuse(path, fmt::format("its C++ build does not match this tilepool's: {}: rebuild it with this tilepool's compiler "
                               "and flags (find_package(tilepool) and tilepool_add_kernel_plugin set them)",
                               differs));
    }
    std::vector<const KernelDef*> kernels = register_plugin_kernels(path, *plugin);
    p.loaded.push_back(Loaded{LoadedPlugin{canonical, std::move(kernels)}, identity, std::move(file), source});
    return p.loaded.back().plugin;
  } catch (...) {
    ::dlclose(handle);
    throw;
  }
}

// The plugin loaded from the file `identity` (as a source), or loaded as that object.
const Loaded* find_loaded(const FileIdentity& identity, bool as_source) {
  for (const Loaded& l : plugins().loaded) {
    const FileIdentity& id = as_source ? l.source : l.identity;
    if (id.device == identity.device && id.inode == identity.inode) return &l;
  }
  return nullptr;
}

// A sealed in-memory copy of the plugin file open on `fd` (memfd_create), or none if this
// system cannot make one. This process and the job's workers map the copy, never the user's
// file: a plugin rewritten in place (cp over it, truncated and written) while loaded would
// change code under running processes (measured: the runner died of SIGSEGV). Throws if the
// file changes while it is read.
UniqueFd private_copy(int fd, const FileIdentity& identity, const std::string& path) {
  UniqueFd copy(::memfd_create("tilepool-plugin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!copy) return copy;
  char buf[1 << 16];
  off_t offset = 0;
  for (;;) {
    const ssize_t n = retry_on_eintr([&] { return ::pread(fd, buf, sizeof buf, offset); });
    if (n < 0) refuse(path, fmt::format("reading it: {}", std::strerror(errno)));
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = retry_on_eintr([&] { return ::write(copy.get(), buf + done, static_cast<std::size_t>(n - done)); });
      if (w < 0) refuse(path, fmt::format("copying it into memory: {}", std::strerror(errno)));
      done += w;
    }
    offset += n;
  }
  struct stat after {};
  if (::fstat(fd, &after) != 0 || !(identity_of(after) == identity) || offset != identity.size) {
    refuse(path, "the file changed while it was being read");
  }
  if (::fcntl(copy.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    refuse(path, fmt::format("sealing its copy: {}", std::strerror(errno)));
  }
  return copy;
}

}  // namespace

const LoadedPlugin& load_plugin(const std::string& path) {
  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  // Open first and check what we opened; everything after loads that open file. O_NONBLOCK:
  // opening a FIFO for reading otherwise waits for a writer (it is refused below, as not a
  // regular file); on a regular file the flag changes nothing.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    const int err = errno;
    refuse(path, err == ENOENT ? std::string("no such file") : std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) refuse(path, std::strerror(errno));
  const FileIdentity identity = identity_of(st);
  if (const Loaded* l = find_loaded(identity, /*as_source=*/true)) {
    fd.reset();
    if (!(l->source == identity)) {
      refuse(path, fmt::format("the file was rewritten in place since it was loaded from '{}' (now {} bytes, was {}); a "
                               "process runs one build of a plugin: start a new one",
                               escape_for_message(l->plugin.path), identity.size, l->source.size));
    }
    return l->plugin;
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
  FileIdentity loaded = identity;
  if (UniqueFd copy = private_copy(fd.get(), identity, path)) {
    struct stat cst {};
    if (::fstat(copy.get(), &cst) != 0) refuse(path, std::strerror(errno));
    fd = std::move(copy);
    loaded = identity_of(cst);
  }
  return load_open_file(std::move(fd), loaded, identity, path, canonical, /*probe=*/true);
}

std::string plugin_path_of(const KernelDef& kernel) {
  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  for (const Loaded& l : p.loaded) {
    if (std::find(l.plugin.kernels.begin(), l.plugin.kernels.end(), &kernel) != l.plugin.kernels.end()) return l.plugin.path;
  }
  return {};
}

std::string pinned_plugin_of(const KernelDef& kernel) {
  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  for (const Loaded& l : p.loaded) {
    if (std::find(l.plugin.kernels.begin(), l.plugin.kernels.end(), &kernel) != l.plugin.kernels.end()) {
      const FileIdentity& id = l.identity;
      return fmt::format("pin:{}:{}:{}:{}:{}:{}:{}", ::getpid(), l.fd.get(), id.device, id.inode, id.size, id.mtime_ns, l.plugin.path);
    }
  }
  return {};
}

const LoadedPlugin& load_pinned_plugin(std::string_view reference) {
  // "pin:PID:FD:DEV:INO:SIZE:MTIME_NS:PATH" (pinned_plugin_of).
  std::string_view rest = reference;
  const auto field = [&rest, reference]() -> std::int64_t {
    const auto colon = rest.find(':');
    std::int64_t v = 0;
    const auto r = std::from_chars(rest.data(), rest.data() + std::min(colon, rest.size()), v);
    if (colon == std::string_view::npos || r.ec != std::errc() || r.ptr != rest.data() + colon) {
      throw Error(Errc::bad_input, fmt::format("malformed pinned plugin reference '{}'", escape_for_message(reference)));
    }
    rest.remove_prefix(colon + 1);
    return v;
  };
  if (!rest.starts_with("pin:")) {
    throw Error(Errc::bad_input, fmt::format("malformed pinned plugin reference '{}'", escape_for_message(reference)));
  }
  rest.remove_prefix(4);
  const std::int64_t pid = field(), runner_fd = field();
  FileIdentity pinned;
  pinned.device = static_cast<std::uint64_t>(field());
  pinned.inode = static_cast<std::uint64_t>(field());
  pinned.size = field();
  pinned.mtime_ns = field();
  const std::string path(rest);

  Plugins& p = plugins();
  const std::lock_guard lock(p.mutex);
  const auto changed = [&path](const FileIdentity& now, const FileIdentity& then) {
    refuse(path,
           fmt::format("the file the job started with was rewritten in place since ({} bytes, modified at {} ns; it was {} "
                       "bytes, modified at {} ns): a job runs only the build it started with; run it again",
                       now.size, now.mtime_ns, then.size, then.mtime_ns),
           Errc::job_failed);
  };
  if (const Loaded* l = find_loaded(pinned, /*as_source=*/false)) {
    if (!(l->identity == pinned)) changed(l->identity, pinned);
    return l->plugin;
  }
  // The runner's open file, not whatever the path holds now.
  const std::string proc = fmt::format("/proc/{}/fd/{}", pid, runner_fd);
  UniqueFd fd(::open(proc.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) refuse(path, fmt::format("cannot open the runner's copy {}: {}", proc, std::strerror(errno)), Errc::job_failed);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) refuse(path, std::strerror(errno), Errc::job_failed);
  const FileIdentity now = identity_of(st);
  if (now.device != pinned.device || now.inode != pinned.inode) {
    refuse(path, fmt::format("{} is not the file the job started with", proc), Errc::job_failed);
  }
  if (!(now == pinned)) changed(now, pinned);
  // The runner probed this very file; loading it again here needs no probe.
  return load_open_file(std::move(fd), pinned, pinned, path, path, /*probe=*/false);
}

}  // namespace tilepool
