#include "detail/worker_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <cstdlib>
#include <fmt/format.h>

#include "detail/supervisor.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/workers/worker.hpp"

namespace bp = boost::process;

namespace tilepool::detail {
namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);

// A pipe whose both ends are close-on-exec from birth.
bp::pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw system_error("pipe for a worker", errno);
  return bp::pipe(fds[0], fds[1]);
}

}  // namespace

std::unique_ptr<WorkerProcess> WorkerProcess::start(const std::filesystem::path& exe, const std::vector<std::string>& args) {
  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  bp::pipe to_worker = make_pipe();
  bp::pipe from_worker = make_pipe();
  std::vector<std::string> argv{std::string(kWorkerFlag)};
  argv.insert(argv.end(), args.begin(), args.end());
  w->child_ = bp::child(exe.string(), bp::args(argv), bp::std_in < to_worker, bp::std_out > from_worker);
  // Keep our ends; the bp::pipes close the worker's ends when they go out of scope.
  w->to_fd_ = to_worker.native_sink();
  to_worker.assign_sink(-1);
  w->from_fd_ = from_worker.native_source();
  from_worker.assign_source(-1);
  w->pid_ = w->child_.id();
  return w;
}

WorkerProcess::~WorkerProcess() { stop(std::chrono::steady_clock::now()); }

void WorkerProcess::await_ready(const std::string& who) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd pfd{from_fd_, POLLIN, 0};
    const int r = retry_on_eintr([&] { return ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(0, left.count()))); });
    if (r <= 0) throw Error(Errc::system, fmt::format("{} (pid {}) did not say ready within 10 s", who, pid_));
    char c = 0;  // byte by byte: what follows the line belongs to the mode's protocol
    const ssize_t n = retry_on_eintr([&] { return ::read(from_fd_, &c, 1); });
    if (n <= 0) {
      std::error_code ec;
      child_.wait(ec);
      reaped_ = true;
      status_ = child_.native_exit_code();
      throw Error(Errc::system, fmt::format("{} (pid {}) exited before it was ready: {}", who, pid_,
                                            describe_wait_status(child_.native_exit_code())));
    }
    line.push_back(c);
  }
  if (line.starts_with("error: ")) {
    // The worker could not start and says why instead of "ready"; it prints nothing itself.
    std::error_code ec;
    child_.wait(ec);
    reaped_ = true;
    status_ = child_.native_exit_code();
    throw Error(Errc::job_failed, fmt::format("{} (pid {}) could not start: {}", who, pid_,
                                              std::string_view(line).substr(7, line.size() - 8)));
  }
  if (line != "ready\n") throw Error(Errc::system, fmt::format("{} (pid {}) said '{}', expected ready", who, pid_, line));
}

std::optional<int> WorkerProcess::poll_exit() {
  if (reaped_) return std::nullopt;
  std::error_code ec;
  if (child_.running(ec)) return std::nullopt;
  reaped_ = true;
  status_ = child_.native_exit_code();
  return status_;
}

void WorkerProcess::kill() noexcept {
  std::error_code ec;
  if (!reaped_ && child_.running(ec)) child_.terminate(ec);
}

void WorkerProcess::close_pipes() noexcept {
  if (to_fd_ >= 0) ::close(to_fd_);
  if (from_fd_ >= 0) ::close(from_fd_);
  to_fd_ = from_fd_ = -1;
}

void WorkerProcess::stop(std::chrono::steady_clock::time_point deadline) noexcept {
  close_pipes();
  if (reaped_ || !child_.valid()) return;
  try {
    std::error_code ec;
    while (child_.running(ec) && std::chrono::steady_clock::now() < deadline) ::usleep(500);
    if (child_.running(ec)) child_.terminate(ec);
    child_.wait(ec);
    status_ = child_.native_exit_code();
  } catch (...) {  // a destructor path: never throw
  }
  reaped_ = true;
}

void stop_all(const std::vector<WorkerProcess*>& workers, std::chrono::milliseconds grace) noexcept {
  for (const auto& w : workers) {
    if (w) w->close_pipes();
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (const auto& w : workers) {
    if (w) w->stop(deadline);
  }
}

std::filesystem::path find_worker_executable(const PoolOptions& options) {
  std::filesystem::path exe = options.worker_executable;
  if (exe.empty()) {
    if (const char* env = std::getenv("TILEPOOL_WORKER"); env != nullptr && *env != '\0') {
      exe = env;
    } else {
      std::error_code ec;
      exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "tilepool-worker";
    }
  }
  if (::access(exe.c_str(), X_OK) != 0) {
    throw Error(Errc::system, fmt::format("cannot run the worker executable {} (expected tilepool-worker beside tilepool, or "
                                          "set TILEPOOL_WORKER)", exe.string()));
  }
  return exe;
}

}  // namespace tilepool::detail
