// share mode: worker processes started with Boost.Process. The control block is a named segment;
// its name on each worker's command line is the initializer's argument. Workers attach the job's
// segments themselves: no array bytes cross a pipe.
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <optional>
#include <utility>

#include "detail/launcher.hpp"
#include "detail/worker_process.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/fault_guard.hpp"

namespace tilepool::detail {
namespace {

class ShareLauncher final : public Launcher {
 public:
  ShareLauncher(const PoolOptions& options, const StagedJob* first_job)
      : options_(options), worker_exe_(find_worker_executable(options)) {
    std::optional<JobDescriptor> staged;
    std::int64_t capacity = std::max<std::int64_t>(1, options.tile_capacity);
    int count = options.workers;
    if (first_job != nullptr) {
      staged = describe(first_job->request, first_job->prepared, 0);
      capacity = std::max(capacity, first_job->prepared.tile_count);
      count = useful_workers(first_job->prepared.tile_count);
    }
    const auto t0 = std::chrono::steady_clock::now();
    start_workers(capacity, staged, count);
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  ~ShareLauncher() override { stop(); }

  Mode mode() const noexcept override { return Mode::share; }
  int worker_count() const noexcept override { return static_cast<int>(workers_.size()); }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  ControlBlock& control_for(std::int64_t tiles) override {
    if (stopped_workers_ > 0) {  // the last job was abandoned while a worker held a tile
      start_workers(std::max(tiles, control_->tile_capacity()), std::nullopt, std::exchange(stopped_workers_, 0));
    }
    // A job bigger than the block: the workers move to a new block sized for it. Their
    // command line names the block (the initializer's argument), so they are started again.
    if (tiles > control_->tile_capacity()) {
      const int count = worker_count();
      stop();
      start_workers(tiles, std::nullopt, count);
    }
    return *control_;
  }

  // A stopped or failed job: its workers claim no more tiles. One still running a tile after a
  // moment is stopped with the others (the next job starts them again), so that no worker
  // writes the job's arrays once its caller has them back (a warm pool in a Python session).
  void end_job(bool abandoned) noexcept override {
    if (!abandoned || workers_.empty() || control_->wait_until_idle(kAbandonGrace)) return;
    const int count = worker_count();
    stop();
    stopped_workers_ = count;
  }

  // A job with more tiles than there are workers: more workers, up to PoolOptions::workers.
  // Started after the job is posted, so that their initializer attaches this job's segments.
  void start_job() override {
    const int from = worker_count();
    const int to = useful_workers(control_->job().tile_count);
    if (to <= from) return;
    const auto t0 = std::chrono::steady_clock::now();
    reserve_descriptors(to - from, "share-mode workers");
    workers_.resize(static_cast<std::size_t>(to));
    try {
      for (int slot = from; slot < to; ++slot) {
        throw_if_interrupted();
        spawn(slot);
      }
      for (int slot = from; slot < to; ++slot) ready(slot);
    } catch (...) {
      // The pool keeps the workers it had; the new ones go (the job fails with the error).
      std::vector<WorkerProcess*> added;
      for (int slot = from; slot < to; ++slot) added.push_back(workers_[static_cast<std::size_t>(slot)].get());
      stop_all(added, std::chrono::milliseconds(0));
      workers_.resize(static_cast<std::size_t>(from));
      throw;
    }
    spawn_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void check(const JobRequest& job, const PreparedJob& /*prepared*/) const override {
    for (const JobArray& a : job.inputs) require_segment(a, "input");
    require_segment(job.output, "output");
  }

  bool runner_supervises() const noexcept override { return true; }
  std::optional<int> poll_exit(int slot) override { return worker(slot).poll_exit(); }
  pid_t pid_of(int slot) const override { return workers_[static_cast<std::size_t>(slot)]->pid(); }
  void kill(int slot) noexcept override { worker(slot).kill(); }
  bool replace(int slot) override {
    spawn(slot);
    ready(slot);
    return true;
  }
  std::vector<pid_t> worker_pids() const override {
    const ControlBlock* control = control_;  // null only while a bigger block is being made
    return control != nullptr ? pids_in(*control, worker_count()) : std::vector<pid_t>{};
  }

 private:
  static void require_segment(const JobArray& a, const char* role) {
    if (a.segment.empty()) {
      throw Error(Errc::usage, fmt::format("share mode needs every {} in a named segment (JobArray::of(segment), or "
                                           "Pool::placement())", role));
    }
  }

  WorkerProcess& worker(int slot) const { return *workers_[static_cast<std::size_t>(slot)]; }

  // Workers that can get a tile of a job of `tiles` tiles: one per tile, at most
  // PoolOptions::workers. A pool of 4,096 for a job of 16 tiles starts 16; a bigger job later
  // starts more (start_job).
  int useful_workers(std::int64_t tiles) const {
    return static_cast<int>(std::clamp<std::int64_t>(tiles, 1, options_.workers));
  }

  // A control block for jobs of up to `capacity` tiles with a slot for every worker the pool may
  // have, and `count` workers attached to it (with `staged`'s segments attached by their
  // initializer).
  void start_workers(std::int64_t capacity, const std::optional<JobDescriptor>& staged, int count) {
    // worker_pids() may be reading the old block from another thread: its mapping stays.
    if (control_segment_) retired_.push_back(control_segment_->mapping());
    control_ = nullptr;
    control_segment_.reset();
    control_segment_ = Segment::create(job_segment_name("control"), ControlBlock::bytes_for(capacity, options_.workers),
                                       options_.backing, MapOptions{.populate = false});
    // In a file: store a page the filesystem cannot provide (a FUSE or network mount's I/O
    // error) is an Error, not SIGBUS; one it cannot keep fails now, not as a worker's garbage.
    guard_faults([&] {
      control_ = ControlBlock::create_in(control_segment_->data(), control_segment_->size(), capacity, options_.workers);
      if (staged) control_->stage_job(*staged);  // staged, not posted: the initializer attaches its segments
    });
    control_segment_->sync_data();
    workers_.clear();
    reserve_descriptors(count, "share-mode workers");
    workers_.resize(static_cast<std::size_t>(count));
    try {
      // All started before any is waited for: they load and attach in parallel. The user's
      // signal is looked at between spawns and while waiting (await_ready).
      for (int slot = 0; slot < count; ++slot) {
        throw_if_interrupted();
        spawn(slot);
      }
      for (int slot = 0; slot < count; ++slot) ready(slot);
    } catch (...) {
      stop();
      throw;
    }
  }

  void spawn(int slot) {
    control_->worker(slot).pid.store(0, std::memory_order_release);
    workers_[static_cast<std::size_t>(slot)] = WorkerProcess::start(
        worker_exe_, {"share", "--control", control_segment_->name(), "--slot", std::to_string(slot), "--parent",
                      std::to_string(::getpid()), "--backing", options_.backing.spec()});
  }
  void ready(int slot) { worker(slot).await_ready(fmt::format("worker {}", slot)); }

  void stop() noexcept {
    if (control_ == nullptr) return;
    control_->request_stop();
    std::vector<WorkerProcess*> workers;
    for (auto& w : workers_) workers.push_back(w.get());
    stop_all(workers, kStopGrace);
    workers_.clear();
  }

  PoolOptions options_;
  std::filesystem::path worker_exe_;
  std::optional<Segment> control_segment_;
  std::vector<std::shared_ptr<Mapping>> retired_;  // smaller blocks this pool outgrew
  ControlBlock* control_ = nullptr;
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
  int stopped_workers_ = 0;  // workers end_job stopped, to start again before the next job
  double spawn_s_ = 0;
};

}  // namespace

std::unique_ptr<Launcher> make_share_launcher(const PoolOptions& options, const StagedJob* first_job) {
  return std::make_unique<ShareLauncher>(options, first_job);
}

}  // namespace tilepool::detail
