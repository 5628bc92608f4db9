#pragma once
// The thread a Python Pool's jobs run on.
//
// Why a thread of its own: share- and copy-mode workers die with the *thread* that started
// them (PR_SET_PDEATHSIG fires when the spawning thread exits, not the process), and a Python
// Pool may be made and used from any Python thread, each of which may end. So every call into
// a tilepool::Pool — start, run (which respawns dead workers), destruction — happens on this
// one thread, which lives as long as the Python Pool. The calling Python thread meanwhile waits
// with the GIL released, waking about every 50 ms to let Python see Ctrl-C and show progress.

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace tilepool::python {

/// One long-lived thread that runs posted tasks one at a time. Never touches Python. post()
/// and the waits are for one caller at a time (PoolHandle's job mutex makes it so); the
/// destructor finishes the running task, stops and joins the thread, and never throws.
class JobThread {
 public:
  JobThread();
  ~JobThread();
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;

  /// Starts `task` on the thread. The previous task must be done (wait() returned).
  void post(std::function<void()> task);
  /// True once the posted task has finished (returns at once then, else after `timeout`).
  bool wait_for(std::chrono::milliseconds timeout);
  /// Waits until the posted task has finished.
  void wait();
  /// Rethrows what the last task threw, if it threw; clears it.
  void rethrow_if_failed();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;  // a task was posted, or stop_
  std::condition_variable done_;  // the task finished
  std::function<void()> task_;
  bool pending_ = false;
  bool finished_ = true;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace tilepool::python
