// threads mode: the same tile loop on std::threads in one process, over a control block in
// private memory. The baseline that shows what process isolation costs.
#include <thread>

#include "detail/executor.hpp"

namespace tilepool::detail {
namespace {

class ThreadExecutor final : public Executor {
 public:
  explicit ThreadExecutor(const PoolOptions& options)
      : capacity_(options.tile_capacity),
        region_(ControlBlock::bytes_for(capacity_)),
        control_(ControlBlock::create_in(region_.data(), region_.size(), capacity_)) {
    threads_.reserve(static_cast<std::size_t>(options.workers));
    for (int slot = 0; slot < options.workers; ++slot) threads_.emplace_back([this, slot] { serve(slot); });
  }

  ~ThreadExecutor() override {
    control_->request_stop();
    for (auto& t : threads_) t.join();
  }

  JobStats run(const JobRequest& job, const PreparedJob& prepared) override {
    std::vector<AnyArray> inputs;
    for (const JobArray& in : job.inputs) inputs.push_back(in.array);
    control_->post_job(describe(job, prepared, Backing{}, next_job_id_++), [&] {
      inputs_ = std::move(inputs);
      output_ = job.output.array;
    });
    wait_for_job(*control_, job, {});
    finish_reduction(*control_, prepared, job.output.array);
    return stats_of(*control_, prepared);
  }

  Mode mode() const noexcept override { return Mode::threads; }
  int worker_count() const noexcept override { return static_cast<int>(threads_.size()); }
  std::int64_t tile_capacity() const noexcept override { return capacity_; }

 private:
  void serve(int slot) {
    serve_jobs(*control_, slot, [this](const JobDescriptor& job) { return bind_job(job, inputs_, output_); });
  }

  std::int64_t capacity_;
  AnonymousRegion region_;
  ControlBlock* control_;
  std::vector<std::thread> threads_;
  std::uint64_t next_job_id_ = 1;
  // The current job's arrays: written only inside post_job's quiet window.
  std::vector<AnyArray> inputs_;
  AnyArray output_;
};

}  // namespace

std::unique_ptr<Executor> make_thread_executor(const PoolOptions& options) {
  return std::make_unique<ThreadExecutor>(options);
}

}  // namespace tilepool::detail
