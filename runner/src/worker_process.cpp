// Boost.Process 1.74 offers bp::posix::use_vfork only where <unistd.h> declares vfork by the
// old XPG rule (config.hpp); glibc declares it under _GNU_SOURCE (g++'s default) too.
#ifndef BOOST_POSIX_HAS_VFORK
#define BOOST_POSIX_HAS_VFORK 1
#endif

#include "detail/worker_process.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <boost/process/posix.hpp>
#include <algorithm>
#include <charconv>
#include <optional>
#include <cstdlib>
#include <thread>
#include <fmt/format.h>

#include "detail/supervisor.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/workers/worker.hpp"

namespace bp = boost::process;

namespace tilepool::detail {
namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);
// How often a wait for "ready" looks at the interrupt flag (a signal also cuts the poll short).
constexpr auto kReadySlice = std::chrono::milliseconds(50);
// Descriptors a spawn holds for a moment besides the two it keeps: the worker's ends of its
// pipes (and two spare: Boost.Process's fork path opens an exec-error pipe; vfork needs none).
constexpr int kSpawnTransientFds = 4;

int open_descriptors() {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return n > 0 ? n - 1 : 0;  // not the descriptor that reads the folder
}

// A pipe whose both ends are close-on-exec from birth.
bp::pipe make_pipe() {
  PipeEnds ends = make_cloexec_pipe();
  if (!ends.read) {
    if (errno == EMFILE || errno == ENFILE) {
      rlimit rl{};
      ::getrlimit(RLIMIT_NOFILE, &rl);
      throw Error(Errc::usage, fmt::format("out of file descriptors while starting a worker ({} open, limit {}): each worker "
                                           "holds {}; raise the limit (ulimit -n) or start fewer workers",
                                           open_descriptors(), rl.rlim_cur, kDescriptorsPerWorker));
    }
    throw system_error("pipe for a worker", errno);
  }
  return bp::pipe(ends.read.release(), ends.write.release());
}

// In the child between vfork and exec. It shares the runner's memory until exec, so no
// handler of the runner's may run in it: the runner blocks every signal around the vfork
// (BlockSignalsWhileSpawning), and the child sets every caught signal back to its default
// before unblocking (exec would have, in any case). Then the user's stop signals are the
// runner's to handle: a terminal sends SIGINT (Ctrl-C) to the whole foreground process group,
// a service manager SIGTERM to the whole cgroup, a closed terminal SIGHUP; a worker that died
// of them would be a failure to report, when the runner is already stopping every worker
// itself (closing their pipes, then SIGKILL). Ignoring survives exec; the mask is cleared of
// whatever the spawning thread blocked (copy mode's I/O threads block SIGPIPE).
struct LeaveStopSignalsToTheRunner : bp::extend::handler {
  template <class Executor>
  void on_exec_setup(Executor& /*exec*/) const {
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction current {};
      if (sig == SIGKILL || sig == SIGSTOP || ::sigaction(sig, nullptr, &current) != 0) continue;
      if (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN) ::sigaction(sig, &fallback, nullptr);
    }
    ignore_stop_signals();
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
  }
};

// Blocks every signal on the spawning thread while it lives (see LeaveStopSignalsToTheRunner):
// one that arrives meanwhile is taken once the mask is back, by the runner.
class BlockSignalsWhileSpawning {
 public:
  BlockSignalsWhileSpawning() noexcept {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &previous_);
  }
  ~BlockSignalsWhileSpawning() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  BlockSignalsWhileSpawning(const BlockSignalsWhileSpawning&) = delete;
  BlockSignalsWhileSpawning& operator=(const BlockSignalsWhileSpawning&) = delete;

 private:
  sigset_t previous_{};
};

}  // namespace

void ignore_stop_signals() noexcept {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &ignore, nullptr);
}

void reserve_descriptors(int workers, std::string_view what) {
  const int open_now = open_descriptors();
  raise_descriptor_limit(static_cast<std::uint64_t>(open_now + kDescriptorsPerWorker * workers + kSpawnTransientFds),
                         fmt::format("{} {} ({} each, {} more while one starts, and {} open now)", workers, what,
                                     kDescriptorsPerWorker, kSpawnTransientFds, open_now),
                         " or start fewer workers");
}

std::unique_ptr<WorkerProcess> WorkerProcess::start(const std::filesystem::path& exe, const std::vector<std::string>& args) {
  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  bp::pipe to_worker = make_pipe();
  bp::pipe from_worker = make_pipe();
  std::vector<std::string> argv{std::string(kWorkerFlag)};
  argv.insert(argv.end(), args.begin(), args.end());
  {
    // vfork, not fork: the child borrows the runner's memory until exec instead of copying its
    // page tables, so a spawn costs the same from a 10 GiB Python process as from a small
    // program (fork took 7 -> 18 ms per pool start as a Python process grew to 0.7 GiB).
    const BlockSignalsWhileSpawning blocked;
    w->child_ = bp::child(exe.string(), bp::args(argv), bp::std_in < to_worker, bp::std_out > from_worker,
                          bp::posix::use_vfork, LeaveStopSignalsToTheRunner{});
  }
  // Keep our ends; the bp::pipes close the worker's ends when they go out of scope.
  w->to_fd_.reset(to_worker.native_sink());
  to_worker.assign_sink(-1);
  w->from_fd_.reset(from_worker.native_source());
  from_worker.assign_source(-1);
  w->pid_ = w->child_.id();
  return w;
}

WorkerProcess::~WorkerProcess() { stop(std::chrono::steady_clock::now()); }

void WorkerProcess::await_ready(const std::string& who) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  while (line.find('\n') == std::string::npos) {
    // Stopped by the user while workers start: that is the answer, whatever the worker does.
    throw_if_interrupted();
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw Error(Errc::system, fmt::format("{} (pid {}) did not say ready within 10 s", who, pid_));
    pollfd pfd{from_fd_.get(), POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), kReadySlice.count())));
    if (r < 0 && errno != EINTR) throw system_error(fmt::format("waiting for {} (pid {})", who, pid_), errno);
    if (r <= 0) continue;
    char c = 0;  // byte by byte: what follows the line belongs to the mode's protocol
    const ssize_t n = retry_on_eintr([&] { return ::read(from_fd_.get(), &c, 1); });
    if (n <= 0) {
      throw_if_interrupted();
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
    // The worker could not start and says why instead of "ready" ("error: ERRC ERRNO TEXT");
    // it prints nothing itself. The error keeps its kind: a segment replaced under the job is
    // bad input whether a starting worker or a warm one finds it.
    std::error_code ec;
    child_.wait(ec);
    reaped_ = true;
    status_ = child_.native_exit_code();
    std::string_view rest = std::string_view(line).substr(7, line.size() - 8);
    const auto number = [&rest]() -> std::optional<int> {
      int v = 0;
      const auto [end, parsed] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
      if (parsed != std::errc() || end == rest.data() + rest.size() || *end != ' ') return std::nullopt;
      rest.remove_prefix(static_cast<std::size_t>(end - rest.data()) + 1);
      return v;
    };
    const std::optional<int> code = number();
    const std::optional<int> err = code ? number() : std::nullopt;
    const std::optional<Errc> kind = err ? errc_from_wire(*code) : std::nullopt;
    if (!kind) throw Error(Errc::system, fmt::format("{} (pid {}) said '{}', expected ready or an error", who, pid_, escape_for_message(line)));
    throw Error(*kind, fmt::format("{} (pid {}) could not start: {}", who, pid_, rest), *err);
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
  // Not child_.terminate(): it waits for the death, and a pool stopping thousands of workers
  // signals them all first. The exit shows in poll_exit (or stop reaps it).
  if (!reaped_ && pid_ > 0) ::kill(pid_, SIGKILL);
}

void WorkerProcess::close_pipes() noexcept {
  to_fd_.reset();
  from_fd_.reset();
}

void WorkerProcess::stop(std::chrono::steady_clock::time_point deadline) noexcept {
  close_pipes();
  if (reaped_ || !child_.valid()) return;
  try {
    while (!exited() && std::chrono::steady_clock::now() < deadline) ::usleep(500);
  } catch (...) {  // a destructor path: never throw
  }
  if (reaped_) return;
  // Not child_.terminate(): it reaps the process and drops its status, which then read as
  // Boost's "still active" value (0x17f: "exit status 1" for a worker that died of a signal).
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (retry_on_eintr([&] { return ::waitpid(pid_, &status, 0); }) == pid_) status_ = status;
  reaped_ = true;
  child_.detach();  // reaped here: Boost.Process must not wait for it again
}

void stop_all(const std::vector<WorkerProcess*>& workers, std::chrono::milliseconds grace) noexcept {
  try {
    for (const auto& w : workers) {
      if (w) w->close_pipes();  // EOF: each worker's loop ends
    }
    // Stopped by the user: no grace. A worker only attaches segments and writes tiles of an
    // output that will not be published, so SIGKILL loses nothing, and thousands of workers
    // that would each need a turn on a core to exit are gone at once.
    const auto deadline = std::chrono::steady_clock::now() + (interrupt_signal() != 0 ? std::chrono::milliseconds(0) : grace);
    auto pause = std::chrono::microseconds(50);
    for (;;) {
      const bool running = std::any_of(workers.begin(), workers.end(), [](WorkerProcess* w) { return w && !w->exited(); });
      if (!running || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(5000));
    }
    // Every straggler is signalled before any is waited for: they die in parallel.
    for (const auto& w : workers) {
      if (w) w->kill();
    }
  } catch (...) {  // a destructor path: never throw; stop() below still reaps each one
  }
  for (const auto& w : workers) {
    if (w) w->stop(std::chrono::steady_clock::now());
  }
}

std::filesystem::path runner_library_directory() {
  // This function's own address: the directory of the libtilepool_runner that holds it, wherever
  // the program that loaded it lives (installed, moved, or in the build tree).
  Dl_info info{};
  if (::dladdr(reinterpret_cast<const void*>(&runner_library_directory), &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  const std::filesystem::path lib = std::filesystem::weakly_canonical(info.dli_fname, ec);
  return ec ? std::filesystem::path(info.dli_fname).parent_path() : lib.parent_path();
}

std::filesystem::path find_worker_executable(const PoolOptions& options) {
  std::vector<std::filesystem::path> tried;
  if (!options.worker_executable.empty()) {
    tried.push_back(options.worker_executable);
  } else if (const char* env = std::getenv("TILEPOOL_WORKER"); env != nullptr && *env != '\0') {
    tried.emplace_back(env);
  } else if (const std::filesystem::path lib = runner_library_directory(); !lib.empty()) {
    // The install layout (and the build tree's): lib/ beside bin/; libexec/ for packagers who
    // keep helper programs off PATH.
    tried.push_back(lib.parent_path() / "bin" / "tilepool-worker");
    tried.push_back(lib.parent_path() / "libexec" / "tilepool-worker");
  }
  for (const auto& exe : tried) {
    if (::access(exe.c_str(), X_OK) == 0) return exe;
  }
  std::string where;
  for (const auto& exe : tried) where += (where.empty() ? "" : " or ") + exe.string();
  if (!options.worker_executable.empty()) {
    throw Error(Errc::system, fmt::format("cannot run the worker executable {} (PoolOptions::worker_executable)", where));
  }
  if (std::getenv("TILEPOOL_WORKER") != nullptr && *std::getenv("TILEPOOL_WORKER") != '\0') {
    throw Error(Errc::system, fmt::format("cannot run the worker executable {} (from TILEPOOL_WORKER)", where));
  }
  throw Error(Errc::system, fmt::format("cannot find the worker executable: no runnable {} (tilepool-worker is looked for "
                                        "relative to libtilepool_runner; set TILEPOOL_WORKER to its path)",
                                        where.empty() ? "tilepool-worker" : where));
}

}  // namespace tilepool::detail

namespace tilepool {

void raise_descriptor_limit(std::uint64_t needed, std::string_view what, std::string_view remedy) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || needed <= rl.rlim_cur) return;
  // The soft limit is a default, not a policy: raise it as far as the hard limit allows (as
  // Go's runtime does), so that thousands of workers need no `ulimit -n` first.
  if (needed <= rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = static_cast<rlim_t>(needed);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) return;
  }
  throw Error(Errc::usage, fmt::format("{} need {} file descriptors; this process may open {} (ulimit -n; hard limit {}): "
                                       "raise the limit{}",
                                       what, needed, rl.rlim_cur, rl.rlim_max, remedy));
}

}  // namespace tilepool

