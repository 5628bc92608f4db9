// tilepool-worker: one process of a share-mode or copy-mode pool.
//
//   tilepool-worker --control NAME --slot N --parent PID [--backing shm|file:DIR]   (share)
//   tilepool-worker --copy --parent PID                                          (copy: copy_worker.cpp)
//
// The initializer attaches the control block named on the command line, attaches every
// segment of the staged job once (pre-faulted), says "ready" on stdout and then runs jobs as
// the control block posts them. It dies with its parent: PR_SET_PDEATHSIG, a getppid() check,
// and EOF on stdin.
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/segment.hpp"
#include "tilepool/workers/tile_loop.hpp"
#include "copy_worker.hpp"

namespace {

using namespace tilepool;

void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The parent may have died before prctl took effect.
  if (::getppid() != parent) std::_Exit(3);
  // EOF on stdin: the runner closed our pipe or is gone.
  std::thread([] {
    char buf[64];
    while (true) {
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EINTR)) std::_Exit(0);
    }
  }).detach();
}

void say(const char* line) {
  const std::size_t n = std::strlen(line);
  if (::write(STDOUT_FILENO, line, n) != static_cast<ssize_t>(n)) std::_Exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("tilepool worker (started by the tilepool runner, not by hand)");
  std::string control_name;
  std::string backing_spec = "shm";
  int slot = -1;
  pid_t parent = 0;
  bool copy = false;
  auto* copy_flag = app.add_flag("--copy", copy, "copy mode: tiles' bytes arrive on stdin, results leave on stdout");
  auto* control_opt = app.add_option("--control", control_name, "control block segment name");
  auto* slot_opt = app.add_option("--slot", slot, "worker slot")->check(CLI::Range(0, kMaxWorkers - 1));
  app.add_option("--parent", parent, "runner pid")->required();
  app.add_option("--backing", backing_spec, "shm or file:DIR");
  control_opt->excludes(copy_flag);
  slot_opt->excludes(copy_flag);
  CLI11_PARSE(app, argc, argv);
  if (copy) return run_copy_worker(parent);
  if (control_opt->count() == 0 || slot_opt->count() == 0) {
    std::fprintf(stderr, "tilepool-worker: error: --control and --slot are required (or --copy)\n");
    return 2;
  }

  die_with_parent(parent);
  try {
    arm_fault_from_environment();
    const Backing backing = Backing::parse(backing_spec);
    Segment segment = Segment::attach(control_name, backing, MapOptions{.populate = false});
    ControlBlock& control = *ControlBlock::open_in(segment.data(), segment.size(), "control block '" + control_name + "'");
    control.worker(slot).pid.store(::getpid(), std::memory_order_release);

    // The initializer: attach the staged job's segments now, so the first job starts warm.
    SegmentCache cache;
    const JobDescriptor& staged = control.job();
    const Backing job_backing = staged.backing[0] != '\0' ? Backing::parse(staged.backing) : backing;
    for (std::uint32_t i = 0; i < staged.input_count; ++i) (void)cache.get(staged.inputs[i], job_backing);
    if (staged.output[0] != '\0') (void)cache.get(staged.output, job_backing);
    say("ready\n");
    serve_jobs(
        control, slot, [&](const JobDescriptor& job) { return bind_job(job, cache); },
        [parent] { return ::getppid() == parent; });
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tilepool-worker: error: %s\n", e.what());
    return 2;
  }
}
