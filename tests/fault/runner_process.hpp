#pragma once
// Fault tests' tools: a `tilepool run` child process the test can signal, and /proc queries.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace tilepool::testing {

inline const std::string kTilepool = std::string(TILEPOOL_BIN_DIR) + "/tilepool";
/// The CLI built with the fault tests' hook (tests/fault_injection/): TILEPOOL_FAULT= reaches
/// its workers in every mode. The production `tilepool` ignores the variable.
inline const std::string kTilepoolWithFaults = std::string(TILEPOOL_BIN_DIR) + "/tilepool-faults";

/// True if `pid` exists and is not a zombie.
inline bool alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return false;
  const auto close = line.rfind(')');
  return !(line.size() > close + 2 && line[close + 2] == 'Z');
}

/// The pids whose parent is `parent`.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string n = e.path().filename().string();
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string line;
    if (!std::getline(f, line)) continue;
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(n)));
  }
  return out;
}

/// Job segments in /dev/shm that belong to `pid`.
inline std::vector<std::string> segments_of(pid_t pid) {
  return entries_with_prefix("tilepool-" + std::to_string(pid) + "-");
}

/// How a RunnerProcess is started.
enum class Group {
  inherit,  ///< in the test's process group
  own,      ///< the leader of a process group of its own, as a shell starts a foreground job
            ///< (a terminal's Ctrl-C goes to every process of that group: signal_group)
};

/// A `tilepool run` child process, started with fork/exec so the test knows its pid.
class RunnerProcess {
 public:
  RunnerProcess(const std::vector<std::string>& args, const std::string& fault, const std::string& stderr_file = "",
                Group group = Group::inherit) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (group == Group::own) ::setpgid(0, 0);
      if (!stderr_file.empty()) {
        if (std::freopen(stderr_file.c_str(), "w", stderr) == nullptr) ::_exit(126);
        ::dup2(STDERR_FILENO, STDOUT_FILENO);
      }
      if (!fault.empty()) ::setenv("TILEPOOL_FAULT", fault.c_str(), 1);
      const std::string& program = fault.empty() ? kTilepool : kTilepoolWithFaults;
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      ::_exit(127);
    }
    // Both sides set the group, as shells do: whichever runs first, it exists before a signal.
    if (pid_ > 0 && group == Group::own) ::setpgid(pid_, pid_);
  }
  RunnerProcess(const RunnerProcess&) = delete;
  RunnerProcess& operator=(const RunnerProcess&) = delete;
  ~RunnerProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);  // its workers follow (PR_SET_PDEATHSIG)
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// Sends `sig` to every process of the runner's group (Group::own): what a terminal does.
  void signal_group(int sig) const { ::kill(-pid_, sig); }
  /// The exit status (or 128+signal), waiting at most `limit`; -1 on timeout.
  int wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};


}  // namespace tilepool::testing
