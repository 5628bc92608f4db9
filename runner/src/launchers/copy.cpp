// copy mode: worker processes (WorkerProcess, `copy` arguments) that share nothing with the
// runner. Each I/O thread runs serve_jobs with a Connection as its JobHandler; the Connection
// moves its worker's tiles through a CopyChannel (the transport, workers/src/copy_transport.cpp,
// beside the worker's side) and reports a dead worker to the Supervisor. What Python's pool.map
// over slices does (pickling each slice), measured honestly: JobStats::bytes_copied counts
// every array byte that crossed a pipe.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <fmt/format.h>
#include <mutex>
#include <thread>

#include "detail/launcher.hpp"
#include "detail/supervisor.hpp"
#include "detail/worker_process.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/workers/copy_transport.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {
namespace {

constexpr int kPipeBytes = 1 << 20;  // asked of F_SETPIPE_SZ (the default limit)
// How long a worker whose pipe ended is given to finish dying before it is SIGKILLed.
constexpr std::chrono::milliseconds kDyingGrace{500};

class CopyLauncher;

// One worker process and the channel to it: the JobHandler its I/O thread runs.
class Connection final : public JobHandler {
 public:
  Connection(CopyLauncher& owner, int slot) : owner_(owner), slot_(slot) {}
  void bind(const JobDescriptor& job) override;
  void run(ControlBlock& control, int slot) override;

  void start_worker();
  [[nodiscard]] WorkerProcess* process() const noexcept { return worker_.get(); }

 private:
  void worker_died(bool timed_out);

  CopyLauncher& owner_;
  const int slot_;
  std::unique_ptr<WorkerProcess> worker_;
  CopyChannel channel_;
};

class CopyLauncher final : public Launcher {
 public:
  // `first_tiles`: the first job's tile count, if known (-1): no more workers are started than
  // it has tiles; a bigger job later starts more (control_for).
  CopyLauncher(const PoolOptions& options, Supervisor& supervisor, std::int64_t first_tiles)
      : options_(options),
        supervisor_(supervisor),
        worker_exe_(find_worker_executable(options)) {
    make_control(std::max<std::int64_t>({1, options.tile_capacity, first_tiles}));
    try {
      add_workers(first_tiles < 0 ? options.workers : useful_workers(first_tiles));
    } catch (...) {
      stop();
      throw;
    }
    start_threads();
  }
  ~CopyLauncher() override { stop(); }

  Mode mode() const noexcept override { return Mode::copy; }
  int worker_count() const noexcept override { return static_cast<int>(connections_.size()); }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  std::uint64_t bytes_copied() const noexcept override { return bytes_copied_.load(std::memory_order_relaxed); }
  ControlBlock& control_for(std::int64_t tiles) override {
    // A bigger job: the I/O threads move to a block sized for it (a stopped block stays
    // stopped); the worker processes, which never see the block, stay, and more are started
    // if the job has tiles for them.
    if (tiles > control_->tile_capacity() || useful_workers(tiles) > worker_count()) {
      stop_threads();
      make_control(std::max(tiles, control_->tile_capacity()));
      try {
        add_workers(useful_workers(tiles));
      } catch (...) {
        start_threads();  // the pool keeps serving with the workers it has
        throw;
      }
      for (int slot = 0; slot < worker_count(); ++slot) {
        WorkerProcess* w = connections_[static_cast<std::size_t>(slot)]->process();
        control_->worker(slot).pid.store(w != nullptr && !w->exited() ? w->pid() : 0, std::memory_order_release);
      }
      start_threads();
    }
    return *control_;
  }

  void bind(const JobRequest& job, const PreparedJob& prepared) override {
    const std::vector<ArraySpec> specs = input_specs(job);
    job_.inputs.clear();
    for (const JobArray& in : job.inputs) job_.inputs.push_back(in.array);
    job_.plan = CopyPlan::make(*prepared.kernel, specs, prepared.output, prepared.grid, job.params);
    job_.output = job.output.array;
    bytes_copied_.store(0, std::memory_order_relaxed);
  }

  void end_job(bool abandoned) noexcept override {
    if (!abandoned) return;
    // Failed or interrupted: no more tiles are handed out, and the I/O threads drain the
    // replies of tiles still in flight into the output. Let them finish before the caller may
    // free it.
    interrupted_.store(true, std::memory_order_release);
    control_->report_error("job stopped");  // the first error's text stays, if there was one
    std::unique_lock lock(busy_mutex_);
    busy_changed_.wait(lock, [this] { return busy_ == 0; });
    interrupted_.store(false, std::memory_order_release);
  }

  // Safe to call from another thread while a job runs.
  std::vector<pid_t> worker_pids() const override { return pids_in(*control_, worker_count()); }

 private:
  friend class Connection;

  void set_busy(int delta) {
    const std::lock_guard lock(busy_mutex_);
    busy_ += delta;
    if (busy_ == 0) busy_changed_.notify_all();
  }

  void make_control(std::int64_t capacity) {
    const std::size_t bytes = ControlBlock::bytes_for(capacity, options_.workers);
    // worker_pids() may be reading the old block from another thread: it stays until we go.
    if (memory_) retired_.push_back(std::move(memory_));
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, capacity, options_.workers);
  }

  int useful_workers(std::int64_t tiles) const {
    return static_cast<int>(std::clamp<std::int64_t>(tiles, 1, options_.workers));
  }

  // Starts worker processes (and their connections) until there are `count`.
  void add_workers(int count) {
    const int from = worker_count();
    if (count <= from) return;
    reserve_descriptors(count - from, "copy-mode workers");
    const auto t0 = std::chrono::steady_clock::now();
    for (int slot = from; slot < count; ++slot) {
      throw_if_interrupted();
      connections_.push_back(std::make_unique<Connection>(*this, slot));
      connections_.back()->start_worker();
    }
    spawn_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void start_threads() {
    for (int slot = 0; slot < worker_count(); ++slot) {
      threads_.emplace_back([this, slot] {
        // A write to a dead worker's pipe must be EPIPE here, not a process-wide SIGPIPE.
        sigset_t pipe_signal;
        sigemptyset(&pipe_signal);
        sigaddset(&pipe_signal, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
        serve_jobs(*control_, slot, *connections_[static_cast<std::size_t>(slot)]);
      });
    }
  }

  void stop_threads() noexcept {
    control_->request_stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  void stop() noexcept {
    stop_threads();
    std::vector<WorkerProcess*> workers;
    for (auto& c : connections_) workers.push_back(c->process());
    stop_all(workers, kStopGrace);  // EOF on stdin ends each worker's loop
  }

  PoolOptions options_;
  Supervisor& supervisor_;
  std::filesystem::path worker_exe_;
  std::shared_ptr<std::byte> memory_;
  std::vector<std::shared_ptr<std::byte>> retired_;  // smaller blocks this pool outgrew
  ControlBlock* control_ = nullptr;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::thread> threads_;
  double spawn_s_ = 0;
  CopyJob job_;
  std::atomic<std::uint64_t> bytes_copied_{0};
  std::atomic<bool> interrupted_{false};  // the job is being abandoned: do not replace workers
  std::mutex busy_mutex_;
  std::condition_variable busy_changed_;
  int busy_ = 0;
};

void Connection::start_worker() {
  worker_.reset();  // reaps the dead one first: its pid may be reused
  owner_.control_->worker(slot_).pid.store(0, std::memory_order_release);
  worker_ = WorkerProcess::start(owner_.worker_exe_, {"copy", "--parent", std::to_string(::getpid())});
  worker_->await_ready(fmt::format("copy worker {}", slot_));
  // From now on the I/O thread never blocks on a pipe.
  for (const int fd : {worker_->stdin_fd(), worker_->stdout_fd()}) {
    (void)::fcntl(fd, F_SETPIPE_SZ, kPipeBytes);  // a smaller pipe still works, just in more steps
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  channel_.reset();
  owner_.control_->worker(slot_).pid.store(worker_->pid(), std::memory_order_release);
}

// The job's descriptor goes to the worker with the first batch (CopyChannel::transfer).
void Connection::bind(const JobDescriptor& /*job*/) {}

void Connection::run(ControlBlock& control, int /*slot*/) {
  if (control.job_failed()) return;  // nothing in flight here: nothing to do
  owner_.set_busy(+1);
  try {
    if (!worker_ || worker_->exited()) start_worker();  // died while idle, or in a failed job: no tile to blame
    const CopyChannel::Outcome outcome = channel_.transfer(
        control, slot_, owner_.job_, worker_->stdin_fd(), worker_->stdout_fd(),
        [this](std::int64_t since_ns) { return owner_.supervisor_.overdue(since_ns); }, owner_.bytes_copied_);
    if (outcome == CopyChannel::Outcome::job_failed) {
      // Its pipes may be mid-message, and no reply of it may reach the output any more: the
      // next job gets a fresh worker.
      channel_.reset();
      worker_->kill();
    } else if (outcome != CopyChannel::Outcome::drained) {
      worker_died(outcome == CopyChannel::Outcome::overdue);
    }
  } catch (...) {
    // A respawn failed, or out of memory; its pipes may be mid-message: a fresh worker next job.
    if (worker_) worker_->kill();
    owner_.set_busy(-1);
    throw;
  }
  owner_.set_busy(-1);
}

// The worker is gone: the Supervisor requeues its tiles and judges the tile it died on (workers
// run tiles in order, so that is the oldest in flight), and a new worker takes its slot.
void Connection::worker_died(bool timed_out) {
  const std::int64_t tile = channel_.oldest_tile();
  channel_.reset();
  // A worker whose pipe ended is dying of its own accord: its status says how (an exit status,
  // a kernel's signal), where our SIGKILL first said "signal 9" or, reaped by Boost, "exit
  // status 1". One that overran the tile timeout, or any after the user's signal, goes now.
  const bool now = timed_out || owner_.interrupted_.load(std::memory_order_acquire) || interrupt_signal() != 0;
  worker_->stop(std::chrono::steady_clock::now() + (now ? std::chrono::milliseconds(0) : kDyingGrace));
  const std::string fate = owner_.supervisor_.fate(worker_->pid(), worker_->exit_status(), timed_out);
  owner_.control_->worker(slot_).pid.store(0, std::memory_order_release);
  owner_.supervisor_.worker_died(slot_, tile, fate);
  // A failed or interrupted job (Ctrl-C reaches the workers too) gets no new worker now: the
  // next job starts one (run).
  if (!owner_.control_->job_failed() && !owner_.interrupted_.load(std::memory_order_acquire)) start_worker();
}

}  // namespace

std::unique_ptr<Launcher> make_copy_launcher(const PoolOptions& options, Supervisor& supervisor, const StagedJob* first_job) {
  return std::make_unique<CopyLauncher>(options, supervisor, first_job != nullptr ? first_job->prepared.tile_count : -1);
}

}  // namespace tilepool::detail
