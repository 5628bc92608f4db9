// threads mode: the same tile loop on std::threads in one process, over a control block in
// private memory. The baseline that shows what process isolation costs.
#include <algorithm>
#include <thread>

#include "detail/launcher.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {
namespace {

class ThreadLauncher final : public Launcher {
 public:
  // With a first job, threads start with it (as many as it has tiles); without one, the pool
  // starts PoolOptions::workers threads now, as share mode starts its workers.
  ThreadLauncher(const PoolOptions& options, bool first_job_given) : workers_(options.workers) {
    handlers_.reserve(static_cast<std::size_t>(options.workers));
    for (int slot = 0; slot < options.workers; ++slot) {
      handlers_.push_back(std::make_unique<LocalJobHandler>([this](const JobDescriptor&) { return arrays_; }));
    }
    make_control(std::max<std::int64_t>(1, options.tile_capacity));
    if (!first_job_given) add_threads(static_cast<std::size_t>(workers_));
  }
  ~ThreadLauncher() override { stop_threads(); }

  Mode mode() const noexcept override { return Mode::threads; }
  int worker_count() const noexcept override { return static_cast<int>(threads_.size()); }
  ControlBlock& control_for(std::int64_t tiles) override {
    if (tiles > control_->tile_capacity()) {  // a bigger job: a block sized for it
      stop_threads();
      make_control(tiles);
    }
    return *control_;
  }
  // As many threads as the job has tiles, up to PoolOptions::workers, started once the job is
  // posted (they enter it at once) and kept for later jobs. Starting thousands takes seconds
  // (and as long to stop them): a signal is looked at before each.
  void start_job() override { add_threads(static_cast<std::size_t>(std::clamp<std::int64_t>(control_->job().tile_count, 1, workers_))); }
  // A stopped or failed job: the threads finish the tiles they hold (a thread cannot be
  // killed) and claim no more; the caller's arrays may be freed only once they are out.
  void end_job(bool abandoned) noexcept override {
    if (abandoned) {
      while (!control_->wait_until_idle(std::chrono::seconds(1))) {
      }
    }
  }
  void bind(const JobRequest& job, const PreparedJob& /*prepared*/) override {
    arrays_.inputs.clear();
    for (const JobArray& in : job.inputs) arrays_.inputs.push_back(in.array);
    arrays_.output = job.output.array;
  }

 private:
  void add_threads(std::size_t count) {
    while (threads_.size() < count) {
      throw_if_interrupted();
      const int slot = static_cast<int>(threads_.size());
      threads_.emplace_back([this, slot] { serve_jobs(*control_, slot, *handlers_[static_cast<std::size_t>(slot)]); });
    }
  }
  void make_control(std::int64_t capacity) {
    const std::size_t bytes = ControlBlock::bytes_for(capacity, workers_);
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, capacity, workers_);
  }
  void stop_threads() noexcept {
    control_->request_stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  int workers_;
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  JobArrays arrays_;  // the current job's: written only inside post_job's quiet window
  std::vector<std::unique_ptr<LocalJobHandler>> handlers_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Launcher> make_thread_launcher(const PoolOptions& options, bool first_job_given) {
  return std::make_unique<ThreadLauncher>(options, first_job_given);
}

}  // namespace tilepool::detail
