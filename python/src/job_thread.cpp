#include "job_thread.hpp"

#include <utility>

namespace tilepool::python {

JobThread::JobThread() : thread_([this] { loop(); }) {}

JobThread::~JobThread() {
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return finished_; });
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void JobThread::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    task_ = std::move(task);
    pending_ = true;
    finished_ = false;
    error_ = nullptr;
  }
  wake_.notify_one();
}

bool JobThread::wait_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return done_.wait_for(lock, timeout, [this] { return finished_; });
}

void JobThread::wait() {
  std::unique_lock lock(mutex_);
  done_.wait(lock, [this] { return finished_; });
}

void JobThread::rethrow_if_failed() {
  std::exception_ptr error;
  {
    std::lock_guard lock(mutex_);
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void JobThread::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return pending_ || stop_; });
    if (!pending_) return;  // stop_, and nothing left to run
    pending_ = false;
    std::function<void()> task = std::move(task_);
    lock.unlock();
    std::exception_ptr error;
    try {
      task();
    } catch (...) {
      error = std::current_exception();
    }
    // The task's captures (arrays, sources) go here, on this thread, before the caller wakes.
    task = nullptr;
    lock.lock();
    error_ = error;
    finished_ = true;
    done_.notify_all();
  }
}

}  // namespace tilepool::python
