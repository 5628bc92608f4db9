// The worker process: the share-mode initializer and serve loop, and the dispatch to copy mode.
// It dies with its parent: PR_SET_PDEATHSIG, a getppid() check, and EOF on stdin.
#include "tilepool/workers/worker.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fmt/format.h>
#include <thread>

#include "copy_worker.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/shared/segment.hpp"
#include "tilepool/workers/plugin.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool {
namespace {

bool g_ready_said = false;  // after "ready", stdout belongs to the mode's protocol

// Writes all of `text` to stdout (the runner's pipe); false if the runner is gone.
bool write_stdout(std::string_view text) noexcept {
  while (!text.empty()) {
    const ssize_t n = retry_on_eintr([&] { return ::write(STDOUT_FILENO, text.data(), text.size()); });
    if (n <= 0) return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A failure before "ready" goes to the runner, in place of "ready", as one line
// "error: ERRC ERRNO TEXT" (its kind and errno as numbers): the runner's error keeps that kind
// and includes the text, so the user sees one line, not the worker's and the runner's.
void say_not_ready(std::string_view why, Errc code, int err) noexcept {
  std::string line = fmt::format("error: {} {} ", static_cast<int>(code), err);
  for (const char c : why) line.push_back(c == '\n' || c == '\r' ? ' ' : c);
  line.push_back('\n');
  (void)write_stdout(line);
}

// Share mode: attach the control block named on the command line (the initializer's argument)
// and the staged job's segments, say ready, serve jobs.
int serve_share(const std::string& control_name, int slot, pid_t parent, const std::string& backing_spec) {
  die_with_parent(parent, /*watch_stdin=*/true);
  const Backing backing = Backing::parse(backing_spec);
  Segment segment = Segment::attach(control_name, backing, MapOptions{.populate = false});
  ControlBlock& control = *ControlBlock::open_in(segment.data(), segment.size(), fmt::format("control block '{}'", control_name));
  TILEPOOL_CHECK(slot < control.worker_capacity());
  control.worker(slot).pid.store(::getpid(), std::memory_order_release);
  SegmentCache cache;
  // A job's arrays, and its kernel's plugin: loaded when a job first needs it (a warm pool
  // that gets a job of a new plugin loads it then; loading a loaded plugin is a lookup). The
  // plugin is the runner's open file, not whatever its path holds now (load_pinned_plugin).
  const auto job_arrays = [&cache](const JobDescriptor& job) {
    if (!job.plugin_path().empty()) (void)load_pinned_plugin(job.plugin_path());
    return cache.arrays_of(job);
  };
  // The initializer: the staged (or current, for a respawned worker) job's plugin is loaded and
  // its segments are attached now, so the first job starts warm; an object that is not the one
  // the job pinned fails the start. Not a job that is over (complete or failed): a worker
  // respawned between jobs found the last job's segments gone and failed its start, which
  // failed the next job ("segment ... was removed since the job started").
  const bool job_over = control.job_complete() || control.job_failed();
  if (!control.job().output_name().empty() && !job_over) (void)job_arrays(control.job());
  LocalJobHandler handler(job_arrays, make_tile_observer(), [parent] { return ::getppid() == parent; });
  say_ready();
  serve_jobs(control, slot, handler);
  return 0;
}

}  // namespace

void say_ready() {
  if (!write_stdout("ready\n")) std::_Exit(3);
  g_ready_said = true;
}

void abort_quietly_on_terminate() noexcept {
  std::set_terminate([] {
    // The default action, not a handler the process inherited (a fork of Python under
    // faulthandler would print the parent's traceback).
    (void)std::signal(SIGABRT, SIG_DFL);
    std::abort();
  });
}

void die_with_parent(pid_t parent, bool watch_stdin) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) std::_Exit(3);  // the parent died before prctl took effect
  if (!watch_stdin) return;
  std::thread([] {
    char buf[64];
    for (;;) {
      if (retry_on_eintr([&] { return ::read(STDIN_FILENO, buf, sizeof buf); }) <= 0) std::_Exit(0);
    }
  }).detach();
}

std::optional<int> serve_as_worker_if_asked(int argc, char** argv) {
  if (argc < 2 || argv[1] != kWorkerFlag) return std::nullopt;
  CLI::App app("a tilepool worker (started by a tilepool pool, not by hand)", std::string(kWorkerFlag));
  app.require_subcommand(1);
  std::string control_name;
  std::string backing_spec = "shm";
  int slot = -1;
  pid_t parent = 0;
  CLI::App* share = app.add_subcommand("share", "attach the control block's segments and run tiles");
  share->add_option("--control", control_name, "control block segment name")->required();
  share->add_option("--slot", slot, "worker slot")->required()->check(CLI::NonNegativeNumber);
  share->add_option("--parent", parent, "runner pid")->required();
  share->add_option("--backing", backing_spec, "shm or file:DIR");
  CLI::App* copy = app.add_subcommand("copy", "compute tiles whose bytes arrive on stdin");
  copy->add_option("--parent", parent, "runner pid")->required();
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  abort_quietly_on_terminate();
  try {
    if (copy->parsed()) return run_copy_worker(parent);
    return serve_share(control_name, slot, parent, backing_spec);
  } catch (...) {  // whatever a plugin's entry point or bind threw, std::exception or not
    const std::string what = describe_current_exception();
    if (!g_ready_said) {
      say_not_ready(what, current_error_code(), current_error_errno());  // the runner reports it
    } else {
      std::fprintf(stderr, "tilepool-worker: error: %s\n", what.c_str());
    }
    return 2;
  }
}


}  // namespace tilepool
