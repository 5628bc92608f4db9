// tilepool-spawn-workers: the floor of a pool's start-up. Starts N copies of a program with
// posix_spawn, all at once, and waits for every one to exit: what starting N worker processes
// costs on this machine before they do any work. scripts/compare_python.py times it with
// tilepool-worker (which, given no arguments, loads, parses its command line and exits) beside
// `tilepool run` of a 1x1 job.
//
// Usage: tilepool-spawn-workers N PROGRAM [ARG...]   (the programs' output goes to /dev/null)
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

extern char** environ;

int main(int argc, char** argv) {
  if (argc < 3 || std::atoi(argv[1]) < 1) {
    std::fprintf(stderr, "usage: tilepool-spawn-workers N PROGRAM [ARG...]\n");
    return 2;
  }
  const int n = std::atoi(argv[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    pid_t pid = 0;
    if (posix_spawn(&pid, argv[2], &actions, nullptr, argv + 2, environ) != 0) {
      std::perror("tilepool-spawn-workers: posix_spawn");
      return 1;
    }
    pids.push_back(pid);
  }
  for (const pid_t pid : pids) waitpid(pid, nullptr, 0);
  posix_spawn_file_actions_destroy(&actions);
  return 0;
}
