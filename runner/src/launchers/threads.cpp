// threads mode: the same tile loop on std::threads in one process, over a control block in
// private memory. The baseline that shows what process isolation costs.
#include <thread>

#include "detail/launcher.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {
namespace {

class ThreadLauncher final : public Launcher {
 public:
  explicit ThreadLauncher(const PoolOptions& options)
      : capacity_(options.tile_capacity),
        memory_(allocate_bytes(ControlBlock::bytes_for(capacity_), Sharing::private_to_process)),
        control_(ControlBlock::create_in(memory_.get(), ControlBlock::bytes_for(capacity_), capacity_)) {
    handlers_.reserve(static_cast<std::size_t>(options.workers));
    for (int slot = 0; slot < options.workers; ++slot) {
      handlers_.push_back(std::make_unique<LocalJobHandler>([this](const JobDescriptor&) { return arrays_; }));
    }
    threads_.reserve(handlers_.size());
    for (int slot = 0; slot < options.workers; ++slot) {
      threads_.emplace_back([this, slot] { serve_jobs(*control_, slot, *handlers_[static_cast<std::size_t>(slot)]); });
    }
  }
  ~ThreadLauncher() override {
    control_->request_stop();
    for (auto& t : threads_) t.join();
  }

  Mode mode() const noexcept override { return Mode::threads; }
  int worker_count() const noexcept override { return static_cast<int>(threads_.size()); }
  std::int64_t tile_capacity() const noexcept override { return capacity_; }
  ControlBlock& control_for(std::int64_t /*tiles*/) override { return *control_; }
  void bind(const JobRequest& job, const PreparedJob& /*prepared*/) override {
    arrays_.inputs.clear();
    for (const JobArray& in : job.inputs) arrays_.inputs.push_back(in.array);
    arrays_.output = job.output.array;
  }

 private:
  std::int64_t capacity_;
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_;
  JobArrays arrays_;  // the current job's: written only inside post_job's quiet window
  std::vector<std::unique_ptr<LocalJobHandler>> handlers_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Launcher> make_thread_launcher(const PoolOptions& options) { return std::make_unique<ThreadLauncher>(options); }

}  // namespace tilepool::detail
