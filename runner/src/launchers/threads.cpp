// threads mode: the same tile loop on std::threads in one process, over a control block in
// private memory. The baseline that shows what process isolation costs.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "detail/launcher.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {
namespace {

// What set_last_words_prefix set. Never destroyed: it is read while exit() runs the static
// destructors, perhaps on another thread (a destroyed string printed garbage bytes).
std::string& last_words_prefix() {
  static auto* prefix = new std::string("tilepool: error: ");  // NOLINT(cppcoreguidelines-owning-memory)
  return *prefix;
}

// True on the threads that run kernels: an end of the process that starts there is a kernel's.
thread_local bool t_kernel_thread = false;


// In threads mode kernels run in the runner's own process, so a kernel that ends the process
// from a tile, bind or its bound kernel's destructor (exit(), std::terminate(), a throw out of
// a noexcept destructor) ends the runner. Before, exit() ended it with the kernel's status (0
// included: a "successful" run with no output) and std::terminate aborted it (134) with
// libstdc++'s lines. While a job runs, such an end says so in one line naming the kernel,
// removes this process's job segments (publication never happened) and exits 1.
class LastWords {
 public:
  LastWords(std::string kernel, Backing backing) : kernel_(std::move(kernel)), backing_(std::move(backing)) {
    previous_ = std::set_terminate(on_terminate);
    active_.store(this, std::memory_order_release);
  }
  // Called once per kernel thread started: glibc (before 2.38) lets several threads run exit()
  // at once, each taking the next handler off the list, so each thread that may call it needs
  // a handler of its own to find.
  static void register_exit_handler() { (void)std::atexit(on_exit); }
  // A kernel thread's ThreadEndHandler: "kernel K called pthread_exit() on tile T [box] in
  // worker thread S (...)" is said as "called pthread_exit() on tile T [box]".
  static void on_thread_end(const std::string& how) {
    const LastWords* words = active_.load(std::memory_order_acquire);
    const auto from = how.find("called");
    if (words != nullptr && from != std::string::npos) words->end(how.substr(from, how.find(" in worker") - from));
  }
  LastWords(const LastWords&) = delete;
  LastWords& operator=(const LastWords&) = delete;
  ~LastWords() {
    const LastWords* self = this;  // another pool's job may have taken over meanwhile
    if (active_.compare_exchange_strong(self, nullptr, std::memory_order_acq_rel)) std::set_terminate(previous_);
  }

 private:
  [[noreturn]] void end(const std::string& how) const noexcept {
    static std::atomic_flag ending = ATOMIC_FLAG_INIT;
    if (ending.test_and_set()) {  // another kernel thread is ending the process: let it
      for (;;) ::pause();
    }
    std::fprintf(stderr,
                 "%skernel %s %s during a threads-mode job, which ended the process (threads mode runs kernels in "
                 "the runner's own process; share mode keeps such an end to one worker)\n",
                 last_words_prefix().c_str(), kernel_.c_str(), how.c_str());
    std::fflush(stderr);
    remove_own_job_segments(backing_);
    ::_exit(1);
  }
  static void on_exit() {
    const LastWords* words = active_.load(std::memory_order_acquire);
    if (words != nullptr && t_kernel_thread) words->end("called exit()");
  }
  [[noreturn]] static void on_terminate() {
    const LastWords* words = active_.load(std::memory_order_acquire);
    if (words == nullptr || !t_kernel_thread) {  // not a kernel's: what was there before says it
      if (words != nullptr && words->previous_ != nullptr) words->previous_();
      std::abort();
    }
    words->end("called std::terminate() (or let an exception out of a noexcept function or destructor" +
               describe_terminating_exception() + ")");
  }

  inline static std::atomic<const LastWords*> active_{nullptr};
  std::string kernel_;
  Backing backing_;
  std::terminate_handler previous_ = nullptr;
};

class ThreadLauncher final : public Launcher {
 public:
  // With a first job, threads start with it (as many as it has tiles); without one, the pool
  // starts PoolOptions::workers threads now, as share mode starts its workers.
  ThreadLauncher(const PoolOptions& options, bool first_job_given) : workers_(options.workers), backing_(options.backing) {
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
  // Every thread has left the job before it ends: a stopped or failed job's threads finish
  // the tiles they hold (a thread cannot be killed), and the caller's arrays may be freed only
  // once they are out; a finished job's threads still destroy their bound kernels, which is
  // part of the job (LastWords speaks for it).
  void end_job(bool abandoned) noexcept override {
    const auto since = std::chrono::steady_clock::now();
    while (!control_->wait_until_idle(std::chrono::milliseconds(50))) {
      // A kernel thread cannot be stopped inside a tile: a user's stop that has waited for one
      // long enough ends the process where its front end says so (the command line's does).
      if (abandoned) end_if_stop_is_stuck(std::chrono::steady_clock::now() - since);
    }
    last_words_.reset();
  }
  void bind(const JobRequest& job, const PreparedJob& /*prepared*/) override {
    last_words_.reset();
    last_words_.emplace(job.kernel, backing_);
    arrays_.inputs.clear();
    for (const JobArray& in : job.inputs) arrays_.inputs.push_back(in.array);
    arrays_.output = job.output.array;
  }

 private:
  void add_threads(std::size_t count) {
    while (threads_.size() < count) {
      throw_if_interrupted();
      const int slot = static_cast<int>(threads_.size());
      LastWords::register_exit_handler();
      threads_.emplace_back([this, slot] {
        t_kernel_thread = true;
        set_thread_end_handler(LastWords::on_thread_end);
        serve_jobs(*control_, slot, *handlers_[static_cast<std::size_t>(slot)]);
      });
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
  Backing backing_;                      // the pool's store: its job segments go at a kernel's end
  std::optional<LastWords> last_words_;  // while a job runs
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

namespace tilepool {

void set_last_words_prefix(std::string prefix) { detail::last_words_prefix() = std::move(prefix); }

}  // namespace tilepool
