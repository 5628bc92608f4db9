// fork mode: the parent keeps the inputs in its own (private) memory and forks the workers after
// posting each job, so they read the inputs copy-on-write. The control block lives in MAP_SHARED
// memory made before the fork; the output must be memory the children share with the parent (a
// segment, or ArrayPlacement's output). Children run the same tile loop as every other mode and
// _exit when the job is over: no atexit handlers, no destructors, nothing of the parent's (test
// framework, CLI) runs twice. Dead children are not replaced (a fork now would not be "after
// loading"); the others finish the job.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <mutex>
#include <thread>

#include "detail/launcher.hpp"
#include "detail/worker_process.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/workers/tile_loop.hpp"
#include "tilepool/workers/worker.hpp"

namespace tilepool::detail {
namespace {


class ForkLauncher final : public Launcher {
 public:
  explicit ForkLauncher(const PoolOptions& options) : options_(options), pids_(static_cast<std::size_t>(options.workers)) {}
  ~ForkLauncher() override { end_job(true); }

  Mode mode() const noexcept override { return Mode::fork; }
  // The children of the last job: one per tile, at most PoolOptions::workers.
  int worker_count() const noexcept override { return forked_; }
  double spawn_seconds() const noexcept override { return spawn_s_; }

  ControlBlock& control_for(std::int64_t tiles) override {
    // A fresh block per job, sized for it: the children are forked after it exists.
    const std::int64_t capacity = std::max<std::int64_t>(1, tiles);
    const std::size_t bytes = ControlBlock::bytes_for(capacity, options_.workers);
    memory_ = allocate_bytes(bytes, Sharing::shared_with_children);
    control_ = ControlBlock::create_in(memory_.get(), bytes, capacity, options_.workers);
    return *control_;
  }

  void check(const JobRequest& job, const PreparedJob& prepared) const override {
    // A reduction's 0-d result is written by the parent; a map's tiles by the children.
    const AnyArray& out = job.output.array;
    if (prepared.kernel->reduction == Reduction::none && !is_shared_with_children(out.data(), out.bytes())) {
      throw Error(Errc::usage, fmt::format("fork mode: the output of {} must be in memory shared with the workers (a "
                                           "segment, or ArrayPlacement's output); it is in this process's private "
                                           "memory, so their writes would be lost", prepared.kernel->name));
    }
  }

  void bind(const JobRequest& job, const PreparedJob& /*prepared*/) override {
    arrays_.inputs.clear();
    for (const JobArray& in : job.inputs) arrays_.inputs.push_back(in.array);
    arrays_.output = job.output.array;
  }

  void start_job() override {
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t parent = ::getpid();
    // No more children than the job has tiles: the others would only be forked and reaped.
    forked_ = static_cast<int>(std::clamp<std::int64_t>(control_->job().tile_count, 1, options_.workers));
    for (int slot = 0; slot < forked_; ++slot) {
      throw_if_interrupted();  // the children forked so far are stopped by end_job(abandoned)
      const pid_t pid = ::fork();
      if (pid == 0) child_main(slot, parent);
      if (pid < 0) throw system_error(fmt::format("fork of worker {}", slot), errno);
      set_pid(slot, pid);
    }
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Asks every child to exit, waits a little (not at all after the user's signal), then
  // SIGKILLs the stragglers, all before reaping any, and reaps them all.
  void end_job(bool /*abandoned*/) noexcept override {
    if (control_ == nullptr) return;
    control_->request_stop();
    const auto deadline = std::chrono::steady_clock::now() + (interrupt_signal() != 0 ? std::chrono::milliseconds(0) : kStopGrace);
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      for (int slot = 0; slot < options_.workers; ++slot) (void)poll_exit(slot);
      if (live_workers() == 0) return;
      if (std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(2000));
    }
    for (int slot = 0; slot < options_.workers; ++slot) kill(slot);
    for (int slot = 0; slot < options_.workers; ++slot) {
      if (const pid_t pid = pid_of(slot); pid > 0) {
        int status = 0;
        (void)retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
        set_pid(slot, 0);
      }
    }
  }

  bool runner_supervises() const noexcept override { return true; }
  std::optional<int> poll_exit(int slot) override {
    const pid_t pid = pid_of(slot);
    if (pid <= 0) return std::nullopt;
    int status = 0;
    const pid_t r = retry_on_eintr([&] { return ::waitpid(pid, &status, WNOHANG); });
    if (r == 0) return std::nullopt;
    set_pid(slot, 0);
    return r == pid ? status : 0;  // ECHILD: reaped by someone else
  }
  pid_t pid_of(int slot) const override {
    const std::lock_guard lock(pids_mutex_);
    return pids_[static_cast<std::size_t>(slot)];
  }
  void kill(int slot) noexcept override {
    if (const pid_t pid = pid_of(slot); pid > 0) ::kill(pid, SIGKILL);
  }
  int live_workers() const override { return static_cast<int>(worker_pids().size()); }
  // The children of the job running now (none between jobs).
  std::vector<pid_t> worker_pids() const override {
    const std::lock_guard lock(pids_mutex_);
    std::vector<pid_t> live;
    for (const pid_t pid : pids_) {
      if (pid > 0) live.push_back(pid);
    }
    return live;
  }

 private:
  // A forked worker: runs the job's tiles (and retried ones) until the parent asks it to stop.
  [[noreturn]] void child_main(int slot, pid_t parent) noexcept {
    int status = 0;
    try {
      // The user's Ctrl-C reaches the whole process group: the parent stops its children.
      ignore_stop_signals();
      abort_quietly_on_terminate();
      die_with_parent(parent, /*watch_stdin=*/false);
      control_->worker(slot).pid.store(::getpid(), std::memory_order_release);
      LocalJobHandler handler([this](const JobDescriptor&) { return arrays_; }, make_tile_observer(),
                              [parent] { return ::getppid() == parent; });
      serve_jobs(*control_, slot, handler);
    } catch (const std::exception& e) {  // serve_jobs reports kernel errors itself; nothing may escape a child
      // With its kind, as a share or copy worker's start failure (WorkerProcess::await_ready).
      control_->report_error(fmt::format("fork worker {} (pid {}) could not start: {}", slot, ::getpid(), e.what()),
                             current_error_code(), current_error_errno());
      status = 2;
    } catch (...) {
      status = 2;
    }
    ::_exit(status);
  }

  void set_pid(int slot, pid_t pid) {
    const std::lock_guard lock(pids_mutex_);
    pids_[static_cast<std::size_t>(slot)] = pid;
  }

  PoolOptions options_;
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  JobArrays arrays_;
  double spawn_s_ = 0;
  int forked_ = options_.workers;  // before the first job: what it may fork
  mutable std::mutex pids_mutex_;  // tests read the pids from another thread
  std::vector<pid_t> pids_;        // by slot; 0: none
};

}  // namespace

std::unique_ptr<Launcher> make_fork_launcher(const PoolOptions& options) { return std::make_unique<ForkLauncher>(options); }

}  // namespace tilepool::detail
