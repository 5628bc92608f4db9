// share mode: a pool of tilepool-worker processes spawned with Boost.Process. The control
// block is a named segment; its name on each worker's command line is the initializer's
// argument. Workers attach the job's segments themselves: no array bytes cross a pipe.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <cstdlib>
#include <map>
#include <optional>

#include "detail/executor.hpp"
#include "detail/reap.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/shared/error.hpp"

namespace bp = boost::process;

namespace tilepool::detail {
namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);

// One worker process and its pipes (stdin: EOF tells it the runner is gone; stdout: "ready").
struct WorkerProcess {
  bp::pipe to_worker;
  bp::pipe from_worker;
  bp::child child;
};

class ShareExecutor final : public Executor {
 public:
  ShareExecutor(const PoolOptions& options, const JobRequest* first_job)
      : options_(options),
        worker_exe_(find_worker_executable(options)),
        control_segment_(Segment::create(job_segment_name("control"), ControlBlock::bytes_for(options.tile_capacity),
                                         options.backing, MapOptions{.populate = false})),
        control_(ControlBlock::create_in(control_segment_.data(), control_segment_.size(), options.tile_capacity)) {
    if (first_job != nullptr) {
      // Staged, not posted: the initializer attaches these segments before saying ready.
      control_->stage_job(describe(*first_job, prepare(*first_job, options.tile_capacity), options.backing, 0));
    }
    workers_.resize(static_cast<std::size_t>(options.workers));
    const auto t0 = std::chrono::steady_clock::now();
    try {
      for (int slot = 0; slot < options.workers; ++slot) spawn(slot);
      for (int slot = 0; slot < options.workers; ++slot) await_ready(slot);
    } catch (...) {
      shutdown();
      throw;
    }
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  ~ShareExecutor() override { shutdown(); }

  JobStats run(const JobRequest& job, const PreparedJob& prepared) override {
    for (const JobArray& a : job.inputs) require_segment(a, "input");
    require_segment(job.output, "output");
    tile_failures_.clear();
    std::uint64_t peak = 0;
    auto next_sample = std::chrono::steady_clock::now();
    current_ = &prepared;
    supervise();  // a worker that died while idle is replaced before the job starts
    control_->post_job(describe(job, prepared, options_.backing, next_job_id_++));
    wait_for_job(*control_, job, [&] {
      supervise();
      if (options_.sample_memory && std::chrono::steady_clock::now() >= next_sample) {
        peak = std::max(peak, sample_pss());
        next_sample += std::chrono::milliseconds(100);
      }
    });
    if (options_.sample_memory) peak = std::max(peak, sample_pss());  // every page is touched now: the peak
    finish_reduction(*control_, prepared, job.output.array);
    JobStats stats = stats_of(*control_, prepared);
    stats.peak_pss_bytes = peak;
    return stats;
  }

  Mode mode() const noexcept override { return Mode::share; }
  int worker_count() const noexcept override { return static_cast<int>(workers_.size()); }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  std::int64_t tile_capacity() const noexcept override { return options_.tile_capacity; }
  std::vector<pid_t> worker_pids() const override {
    std::vector<pid_t> pids;
    for (const auto& w : workers_) {
      if (w) pids.push_back(w->child.id());
    }
    return pids;
  }

 private:
  static void require_segment(const JobArray& a, const char* role) {
    if (a.segment.empty()) {
      throw Error(Errc::usage, std::string("share mode needs every ") + role + " in a named segment (JobArray::of(segment))");
    }
  }

  std::uint64_t sample_pss() const { return pss_bytes_with(worker_pids()); }

  void spawn(int slot) {
    auto w = std::make_unique<WorkerProcess>();
    // Close-on-exec on every pipe end: the child gets its stdin/stdout as dup2 copies (which
    // do not inherit the flag) and no other worker's pipes, so EOF on stdin means we are gone.
    for (const int fd : {w->to_worker.native_source(), w->to_worker.native_sink(), w->from_worker.native_source(),
                         w->from_worker.native_sink()}) {
      ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    w->child = bp::child(worker_exe_.string(),
                         bp::args({"--control", control_segment_.name(), "--slot", std::to_string(slot), "--parent",
                                   std::to_string(::getpid()), "--backing", options_.backing.spec()}),
                         bp::std_in < w->to_worker, bp::std_out > w->from_worker);
    // The parent keeps only its own ends: the worker sees EOF on stdin when we are gone.
    ::close(w->to_worker.native_source());
    ::close(w->from_worker.native_sink());
    w->to_worker.assign_source(-1);
    w->from_worker.assign_sink(-1);
    workers_[static_cast<std::size_t>(slot)] = std::move(w);
  }

  void await_ready(int slot) {
    WorkerProcess& w = *workers_[static_cast<std::size_t>(slot)];
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
    while (line.find('\n') == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd pfd{w.from_worker.native_source(), POLLIN, 0};
      const int r = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw Error(Errc::system, "worker " + std::to_string(slot) + " (pid " + std::to_string(w.child.id()) + ") did not say ready within 10 s");
      char buf[64];
      const ssize_t n = ::read(pfd.fd, buf, sizeof buf);
      if (n <= 0) {
        w.child.wait();
        throw Error(Errc::system, "worker " + std::to_string(slot) + " (pid " + std::to_string(w.child.id()) +
                                      ") exited before it was ready: " + describe_wait_status(w.child.native_exit_code()));
      }
      line.append(buf, static_cast<std::size_t>(n));
    }
    if (line != "ready\n") throw Error(Errc::system, "worker " + std::to_string(slot) + " said '" + line + "', expected ready");
  }

  // Notices dead workers: their tiles go back to the queue and they are replaced. A tile whose
  // worker died more than max_tile_retries times fails the job.
  void supervise() {
    for (int slot = 0; slot < static_cast<int>(workers_.size()); ++slot) {
      WorkerProcess& w = *workers_[static_cast<std::size_t>(slot)];
      std::error_code ec;
      if (w.child.running(ec)) {
        if (!timed_out(slot)) continue;
        // Hung (looping, or stopped): SIGKILL works on stopped processes too.
        w.child.terminate(ec);
        timed_out_[slot] = true;
      }
      const pid_t pid = w.child.id();
      const std::string status = std::exchange(timed_out_[slot], false)
                                     ? "killed after the tile timeout of " + std::to_string(options_.tile_timeout.count()) + " ms"
                                     : describe_wait_status(w.child.native_exit_code());
      const std::int64_t tile = control_->worker(slot).current_tile.load(std::memory_order_acquire);
      control_->requeue_tiles_of(slot);
      if (tile >= 0 && ++tile_failures_[tile] > options_.max_tile_retries) {
        throw Error(Errc::job_failed, std::string(current_->kernel->name) + ": tile " + std::to_string(tile) + " " +
                                          format_box(current_->grid.box(tile)) + " killed its worker " +
                                          std::to_string(tile_failures_[tile]) + " times (last: pid " + std::to_string(pid) +
                                          ", " + status + ")");
      }
      spawn(slot);
      await_ready(slot);
    }
  }

  bool timed_out(int slot) const noexcept {
    if (options_.tile_timeout.count() <= 0) return false;
    const WorkerSlot& s = control_->worker(slot);
    if (s.current_tile.load(std::memory_order_acquire) < 0) return false;
    const std::int64_t held_ns = monotonic_ns() - s.claimed_at_ns.load(std::memory_order_relaxed);
    return held_ns > std::chrono::duration_cast<std::chrono::nanoseconds>(options_.tile_timeout).count();
  }

  void shutdown() noexcept {
    control_->request_stop();
    for (auto& w : workers_) {
      if (w) ::close(w->to_worker.native_sink());
      if (w) w->to_worker.assign_sink(-1);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    for (auto& w : workers_) {
      if (!w) continue;
      reap_child(w->child, deadline);
    }
    workers_.clear();
  }

  PoolOptions options_;
  std::filesystem::path worker_exe_;
  Segment control_segment_;
  ControlBlock* control_;
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
  std::map<std::int64_t, int> tile_failures_;
  std::map<int, bool> timed_out_;
  const PreparedJob* current_ = nullptr;  // the job run() is waiting for
  std::uint64_t next_job_id_ = 1;
  double spawn_s_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_share_executor(const PoolOptions& options, const JobRequest* first_job) {
  return std::make_unique<ShareExecutor>(options, first_job);
}

}  // namespace tilepool::detail
