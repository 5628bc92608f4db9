#pragma once
/// @file
/// The plumbing every example shares, kept out of the examples so that each main.cpp shows
/// only its pattern: segment names, starting forked children, finding our own executable.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tilepool::examples {

/// A segment name for this run: "tpex-<pid>-<role>". The pid keeps two runs of the same
/// example (two builds testing at once) apart; the prefix lets the tests check for leftovers.
inline std::string segment_name(std::string_view role) {
  std::string name = "tpex-";
  name += std::to_string(::getpid());
  name += '-';
  name += role;
  return name;
}

/// Forks `count` children that each run `body(index)`, waits for all of them, and throws
/// if one failed. The C++ twin of starting `multiprocessing.Process(target=body, args=(i,))`
/// with the fork start method, then joining each one.
///
/// A forked child is a copy of this process, including every RAII handle: if it returned
/// from main, it would run the creator's destructors and remove segments the parent still
/// uses. So a child leaves with _exit(), which runs no destructors: the parent alone owns
/// the names. Call it before starting any thread (fork copies only the calling thread).
template <class Body>
void run_forked(int count, Body&& body) {
  // Unflushed output would be copied into every child and printed once more by each.
  std::fflush(nullptr);
  std::vector<pid_t> children;
  for (int i = 0; i < count; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      int status = 0;
      try {
        body(i);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: error: %s\n", i, e.what());
        status = 1;
      } catch (...) {
        status = 1;
      }
      std::fflush(nullptr);
      ::_exit(status);
    }
    children.push_back(pid);
  }
  std::string failures;
  for (std::size_t i = 0; i < children.size(); ++i) {
    int status = 0;
    while (::waitpid(children[i], &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures += ' ';
      failures += std::to_string(i);
    }
  }
  if (!failures.empty()) throw std::runtime_error("children failed:" + failures);
}

/// The path of the running executable, to start another copy of it (the C++ twin of the
/// "spawn" start method: a fresh process that inherits nothing and attaches by name).
inline std::filesystem::path self_executable() { return std::filesystem::read_symlink("/proc/self/exe"); }

}  // namespace tilepool::examples
