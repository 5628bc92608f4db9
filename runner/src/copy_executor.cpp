// copy mode: tilepool-worker --copy processes (spawned with Boost.Process) that share nothing
// with the runner. Each tile's input bytes (with halo) go down the worker's stdin and the tile's
// output comes back on its stdout; the runner assembles the output. This is what Python's
// pool.map over slices does (pickling each slice), measured honestly: every array byte crosses
// a pipe, and JobStats::bytes_copied counts them.
//
// Dispatch still goes through a ControlBlock (in private memory, as in threads mode): one I/O
// thread per worker claims tiles for it and keeps several in flight, so the pipe never runs dry
// while the worker computes. The I/O is as cheap as the design allows:
//  - requests are batched: one writev carries many tiles' headers and rows; long rows are
//    written straight from the input arrays, short ones gathered into one staging buffer;
//  - replies are read in large chunks and copied to their place in the output; a large payload's
//    remainder is read straight into the output rows (readv, no staging copy);
//  - the pipes are enlarged to 1 MiB so a batch fits.
// A worker that dies gives its tiles back (the ControlBlock requeues them) and is respawned; a
// tile that kills its worker more than max_tile_retries times fails the job.
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "detail/executor.hpp"
#include "detail/reap.hpp"
#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/copy_protocol.hpp"

namespace bp = boost::process;

namespace tilepool::detail {
namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr int kPipeBytes = 1 << 20;                      // asked of F_SETPIPE_SZ (the default limit)
constexpr std::size_t kDirectRun = 1024;                 // input runs this long are written from the array itself
constexpr std::size_t kDirectRead = std::size_t{64} << 10;  // payload remainders this big are read in place
constexpr std::size_t kReadBuffer = std::size_t{256} << 10;
constexpr std::size_t kInflightBytes = std::size_t{2} << 20;  // request bytes queued per worker
constexpr std::size_t kMaxInflight = 1024;                    // tiles queued per worker
constexpr std::size_t kMaxErrorText = std::size_t{64} << 10;

// A list of memory pieces consumed front to back by writev/readv or memcpy, with partial
// progress: the cursor of a non-blocking transfer.
class IoList {
 public:
  void clear() noexcept {
    iov_.clear();
    next_ = 0;
    remaining_ = 0;
  }
  void add(const void* p, std::size_t n) {
    if (n == 0) return;
    remaining_ += n;
    if (!iov_.empty()) {
      iovec& b = iov_.back();
      if (static_cast<const std::byte*>(b.iov_base) + b.iov_len == p) {
        b.iov_len += n;
        return;
      }
    }
    iov_.push_back(iovec{const_cast<void*>(p), n});  // writev reads through it; readv targets are writable
  }
  [[nodiscard]] bool done() const noexcept { return remaining_ == 0; }
  [[nodiscard]] std::size_t remaining() const noexcept { return remaining_; }

  // Copies up to `n` bytes from `src` into the pieces; returns how many it took.
  std::size_t fill_from(const std::byte* src, std::size_t n) noexcept {
    std::size_t taken = 0;
    while (taken < n && next_ < iov_.size()) {
      iovec& v = iov_[next_];
      const std::size_t k = std::min(v.iov_len, n - taken);
      std::memcpy(v.iov_base, src + taken, k);
      taken += k;
      advance(k);
    }
    return taken;
  }
  ssize_t write_to(int fd) noexcept {
    const ssize_t n = ::writev(fd, iov_.data() + next_, batch());
    if (n > 0) advance(static_cast<std::size_t>(n));
    return n;
  }
  ssize_t read_from(int fd) noexcept {
    const ssize_t n = ::readv(fd, iov_.data() + next_, batch());
    if (n > 0) advance(static_cast<std::size_t>(n));
    return n;
  }

 private:
  [[nodiscard]] int batch() const noexcept { return static_cast<int>(std::min<std::size_t>(iov_.size() - next_, IOV_MAX)); }
  void advance(std::size_t n) noexcept {
    remaining_ -= n;
    while (n > 0) {
      iovec& v = iov_[next_];
      const std::size_t k = std::min(v.iov_len, n);
      v.iov_base = static_cast<std::byte*>(v.iov_base) + k;
      v.iov_len -= k;
      n -= k;
      if (v.iov_len == 0) ++next_;
    }
    while (next_ < iov_.size() && iov_[next_].iov_len == 0) ++next_;
  }

  std::vector<iovec> iov_;
  std::size_t next_ = 0;
  std::size_t remaining_ = 0;
};

// One batch of requests on its way to a worker: headers and short rows staged in one buffer,
// long rows referenced where they are.
class Outbox {
 public:
  [[nodiscard]] bool empty() const noexcept { return list_.done(); }
  void reset() noexcept {
    staging_.clear();
    pieces_.clear();
    list_.clear();
    payload_bytes_ = 0;
  }
  void stage(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    const std::size_t at = staging_.size();
    staging_.insert(staging_.end(), b, b + n);
    if (!pieces_.empty() && pieces_.back().ptr == nullptr) {
      pieces_.back().len += n;  // staged bytes are contiguous
    } else {
      pieces_.push_back(Piece{nullptr, at, n});
    }
  }
  void direct(const std::byte* p, std::size_t n) { pieces_.push_back(Piece{p, 0, n}); }
  void count_payload(std::size_t n) noexcept { payload_bytes_ += n; }
  // Freezes the batch: the staging buffer will not move any more.
  void seal() {
    list_.clear();
    for (const Piece& p : pieces_) list_.add(p.ptr != nullptr ? p.ptr : staging_.data() + p.offset, p.len);
  }
  [[nodiscard]] IoList& list() noexcept { return list_; }
  [[nodiscard]] std::size_t payload_bytes() const noexcept { return payload_bytes_; }

 private:
  struct Piece {
    const std::byte* ptr;  // nullptr: in staging_ at offset
    std::size_t offset;
    std::size_t len;
  };
  std::vector<std::byte> staging_;
  std::vector<Piece> pieces_;
  IoList list_;
  std::size_t payload_bytes_ = 0;
};

// A tile sent (or being sent) to a worker and not answered yet. Workers answer in order.
struct InFlight {
  std::int64_t tile;
  std::size_t request_bytes;
  std::size_t reply_bytes;
};

// One worker process, its pipes, and the state of the transfers in both directions. Owned by its
// I/O thread while the pool runs.
struct Connection {
  bp::child child;
  pid_t pid = 0;
  int to_fd = -1;    // the worker's stdin
  int from_fd = -1;  // the worker's stdout
  std::uint64_t setup_job = 0;  // the job whose setup this worker has been sent

  Outbox out;
  std::deque<InFlight> in_flight;
  std::size_t in_flight_bytes = 0;
  std::int64_t front_since_ns = 0;  // when the oldest tile in flight became the oldest

  // Replies being parsed.
  std::unique_ptr<std::byte[]> buf{new std::byte[kReadBuffer]};
  std::size_t begin = 0, end = 0;
  CopyMessage msg;
  std::size_t header_got = 0;
  bool in_payload = false;
  IoList payload;
  std::string error_text;

  void close_pipes() noexcept {
    if (to_fd >= 0) ::close(to_fd);
    if (from_fd >= 0) ::close(from_fd);
    to_fd = from_fd = -1;
  }
  void reset_transfers() noexcept {
    out.reset();
    in_flight.clear();
    in_flight_bytes = 0;
    begin = end = 0;
    header_got = 0;
    in_payload = false;
    payload.clear();
  }
};

// The current job as the I/O threads see it: written only inside post_job's quiet window.
struct CurrentJob {
  std::uint64_t job_id = 0;
  std::optional<CopyPlan> plan;
  std::vector<AnyArray> inputs;
  AnyArray output;
  CopyJobSetup setup;
};

class CopyExecutor final : public Executor {
 public:
  explicit CopyExecutor(const PoolOptions& options)
      : options_(options),
        worker_exe_(find_worker_executable(options)),
        region_(ControlBlock::bytes_for(options.tile_capacity)),
        control_(ControlBlock::create_in(region_.data(), region_.size(), options.tile_capacity)) {
    connections_.resize(static_cast<std::size_t>(options.workers));
    const auto t0 = std::chrono::steady_clock::now();
    try {
      for (int slot = 0; slot < options.workers; ++slot) spawn(slot);
      for (int slot = 0; slot < options.workers; ++slot) await_ready(slot);
    } catch (...) {
      shutdown();
      throw;
    }
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    threads_.reserve(connections_.size());
    for (int slot = 0; slot < options.workers; ++slot) threads_.emplace_back([this, slot] { serve(slot); });
  }

  ~CopyExecutor() override { shutdown(); }

  JobStats run(const JobRequest& job, const PreparedJob& prepared) override {
    std::vector<ArraySpec> specs;
    std::vector<AnyArray> inputs;
    for (const JobArray& in : job.inputs) {
      specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
      inputs.push_back(in.array);
    }
    const std::uint64_t job_id = next_job_id_++;
    CopyPlan plan = CopyPlan::make(*prepared.kernel, specs, prepared.output, prepared.grid);
    const CopyJobSetup setup = CopyPlan::setup(job_id, *prepared.kernel, specs, prepared.output, job.tile, job.params);
    control_->post_job(describe(job, prepared, Backing{}, job_id), [&] {
      job_.job_id = job_id;
      job_.plan = std::move(plan);
      job_.inputs = std::move(inputs);
      job_.output = job.output.array;
      job_.setup = setup;
      bytes_copied_.store(0, std::memory_order_relaxed);
      const std::lock_guard lock(failures_mutex_);
      tile_failures_.clear();
    });
    std::uint64_t peak = 0;
    auto next_sample = std::chrono::steady_clock::now();
    try {
      wait_for_job(*control_, job, [&] {
        if (options_.sample_memory && std::chrono::steady_clock::now() >= next_sample) {
          peak = std::max(peak, pss_bytes_with(worker_pids()));
          next_sample += std::chrono::milliseconds(100);
        }
      });
    } catch (...) {
      // Interrupted, or failed: no more tiles are handed out, and the I/O threads drain the
      // replies of tiles still in flight into the output. Let them finish before the caller
      // may free it.
      interrupted_.store(true, std::memory_order_release);
      control_->report_error("job stopped");  // the first error's text stays, if there was one
      wait_until_idle();
      interrupted_.store(false, std::memory_order_release);
      throw;
    }
    if (options_.sample_memory) peak = std::max(peak, pss_bytes_with(worker_pids()));
    finish_reduction(*control_, prepared, job.output.array);
    JobStats stats = stats_of(*control_, prepared);
    stats.bytes_copied = bytes_copied_.load(std::memory_order_relaxed);
    stats.peak_pss_bytes = peak;
    return stats;
  }

  Mode mode() const noexcept override { return Mode::copy; }
  int worker_count() const noexcept override { return static_cast<int>(connections_.size()); }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  std::int64_t tile_capacity() const noexcept override { return options_.tile_capacity; }
  // Safe to call from another thread while run() runs.
  std::vector<pid_t> worker_pids() const override {
    std::vector<pid_t> pids;
    for (int slot = 0; slot < static_cast<int>(connections_.size()); ++slot) {
      const pid_t pid = control_->worker(slot).pid.load(std::memory_order_acquire);
      if (pid > 0) pids.push_back(pid);
    }
    return pids;
  }

 private:
  // --- worker processes ----------------------------------------------------------------------

  // Starts the worker of `slot`, reusing the slot's Connection (its buffers, and references
  // the I/O thread holds) if there is one.
  void spawn(int slot) {
    auto& owned = connections_[static_cast<std::size_t>(slot)];
    if (!owned) owned = std::make_unique<Connection>();
    Connection* c = owned.get();
    // Close-on-exec from birth (pipe2): a worker spawned by another I/O thread at the same
    // moment must not inherit this worker's pipe ends, or EOF would never come.
    int down[2], up[2];
    if (::pipe2(down, O_CLOEXEC) != 0) throw system_error("pipe for copy worker " + std::to_string(slot), errno);
    if (::pipe2(up, O_CLOEXEC) != 0) {
      const int err = errno;
      ::close(down[0]);
      ::close(down[1]);
      throw system_error("pipe for copy worker " + std::to_string(slot), err);
    }
    bp::pipe to_worker(down[0], down[1]);
    bp::pipe from_worker(up[0], up[1]);
    c->child = bp::child(worker_exe_.string(), bp::args({"--copy", "--parent", std::to_string(::getpid())}),
                         bp::std_in < to_worker, bp::std_out > from_worker);
    // Keep our ends; the bp::pipes close the worker's ends when they go out of scope.
    c->to_fd = to_worker.native_sink();
    to_worker.assign_sink(-1);
    c->from_fd = from_worker.native_source();
    from_worker.assign_source(-1);
    c->pid = c->child.id();
    (void)::fcntl(c->to_fd, F_SETPIPE_SZ, kPipeBytes);  // a smaller pipe still works, just in more steps
    (void)::fcntl(c->from_fd, F_SETPIPE_SZ, kPipeBytes);
    control_->worker(slot).pid.store(c->pid, std::memory_order_release);
  }

  void await_ready(int slot) {
    Connection& c = *connections_[static_cast<std::size_t>(slot)];
    CopyMessage m;
    std::size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
    const std::string who = "copy worker " + std::to_string(slot) + " (pid " + std::to_string(c.pid) + ")";
    while (got < sizeof m) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd pfd{c.from_fd, POLLIN, 0};
      const int r = ::poll(&pfd, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) throw Error(Errc::system, who + " did not say ready within 10 s");
      const ssize_t n = ::read(c.from_fd, reinterpret_cast<std::byte*>(&m) + got, sizeof m - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        std::error_code ec;
        c.child.wait(ec);
        throw Error(Errc::system, who + " exited before it was ready: " + describe_wait_status(c.child.native_exit_code()));
      }
      got += static_cast<std::size_t>(n);
    }
    if (m.magic != kCopyMagic || m.kind != CopyKind::ready) throw Error(Errc::system, who + " did not say ready");
    // From now on the I/O thread never blocks on a pipe.
    for (const int fd : {c.to_fd, c.from_fd}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  // Reaps a dead (or misbehaving) worker. Returns its fate for messages.
  std::string reap_worker(int slot) {
    Connection& c = *connections_[static_cast<std::size_t>(slot)];
    c.close_pipes();
    std::error_code ec;
    if (c.child.running(ec)) c.child.terminate(ec);
    c.child.wait(ec);
    const std::string fate = "pid " + std::to_string(c.pid) + ", " + describe_wait_status(c.child.native_exit_code());
    c.pid = 0;  // reaped: the number may now belong to someone else
    control_->worker(slot).pid.store(0, std::memory_order_release);
    return fate;
  }

  void replace_worker(int slot) {
    reap_worker(slot);
    spawn(slot);
    await_ready(slot);
  }

  // --- the I/O threads -----------------------------------------------------------------------

  // Mirrors serve_jobs: sleep on the epoch, enter each new job (or the same job again after
  // tiles were requeued), move its tiles through this slot's worker, leave.
  void serve(int slot) {
    // A write to a dead worker's pipe must be EPIPE here, not a process-wide SIGPIPE.
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
    std::uint32_t seen = 0;
    while (!control_->stop_requested()) {
      const std::uint32_t epoch = control_->epoch();
      if (epoch == seen) {
        control_->wait_for_epoch_change(epoch, std::chrono::milliseconds(500));
        continue;
      }
      if (!control_->enter_job()) {
        control_->wait_for_epoch_change(epoch, std::chrono::milliseconds(1));
        continue;
      }
      seen = epoch;
      set_busy(+1);
      if (control_->job().job_id != 0) {
        try {
          run_job(slot);
        } catch (const std::exception& e) {  // a respawn failed, or out of memory
          control_->report_error(std::string("copy mode, worker slot ") + std::to_string(slot) + ": " + e.what());
          // Its pipes may be mid-message: start the next job with a fresh worker.
          Connection& c = *connections_[static_cast<std::size_t>(slot)];
          if (c.pid > 0) ::kill(c.pid, SIGKILL);
        }
      }
      set_busy(-1);
      control_->leave_job();
    }
  }

  void run_job(int slot) {
    if (control_->job_failed()) return;  // nothing in flight here: nothing to do
    Connection& c = *connections_[static_cast<std::size_t>(slot)];
    std::error_code ec;
    if (!c.child.running(ec)) {  // died while idle: no tile to blame
      c.setup_job = 0;
      replace_worker(slot);
    }
    const CopyPlan& plan = *job_.plan;
    c.reset_transfers();
    if (c.setup_job != job_.job_id) {
      const CopyMessage m{.kind = CopyKind::job, .job_id = job_.job_id, .payload_bytes = sizeof(CopyJobSetup)};
      c.out.stage(&m, sizeof m);
      c.out.stage(&job_.setup, sizeof job_.setup);
      c.out.seal();
      c.setup_job = job_.job_id;
    }
    bool exhausted = false;
    for (;;) {
      // Refill when the batch is written and the pipeline has drained to half: batches, not
      // single tiles, so the syscalls per tile stay few.
      if (c.out.empty() && !exhausted && c.in_flight.size() <= kMaxInflight / 2 &&
          (c.in_flight.empty() || c.in_flight_bytes <= kInflightBytes / 2)) {
        exhausted = !fill_batch(slot, c, plan);
      }
      if (c.out.empty() && c.in_flight.empty()) return;
      pollfd fds[2] = {{c.from_fd, POLLIN, 0}, {c.to_fd, static_cast<short>(c.out.empty() ? 0 : POLLOUT), 0}};
      const int r = ::poll(fds, 2, 200);
      if (r < 0 && errno != EINTR) throw system_error("poll on copy worker pipes", errno);
      bool alive = true;
      if (!c.out.empty() && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) alive = write_some(c);
      if (alive && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0) alive = read_replies(slot, c, plan);
      if (alive && tile_timed_out(c)) ::kill(c.pid, SIGKILL);  // its EOF arrives next
      if (!alive) {
        worker_died(slot, c, plan);
        return;  // serve() comes back for the requeued tiles
      }
    }
  }

  // Claims tiles for this worker and stages their requests. Returns false once no tile is left.
  bool fill_batch(int slot, Connection& c, const CopyPlan& plan) {
    c.out.reset();
    bool more = true;
    while (c.in_flight.size() < kMaxInflight && (c.in_flight.empty() || c.in_flight_bytes < kInflightBytes)) {
      const std::int64_t t = control_->claim_next_tile(slot);
      if (t < 0) {
        more = false;
        break;
      }
      const TileRegions r = plan.regions(t);
      const CopyMessage m{.kind = CopyKind::tile, .job_id = job_.job_id, .tile = t, .payload_bytes = r.request_bytes};
      c.out.stage(&m, sizeof m);
      const auto specs = plan.inputs();
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const std::byte* base = job_.inputs[i].data();
        for_each_run(specs[i].shape, dtype_size(specs[i].dtype), r.inputs[i], [&](std::size_t offset, std::size_t len) {
          if (len >= kDirectRun) {
            c.out.direct(base + offset, len);
          } else {
            c.out.stage(base + offset, len);
          }
        });
      }
      c.out.count_payload(r.request_bytes);
      if (c.in_flight.empty()) c.front_since_ns = monotonic_ns();
      c.in_flight.push_back(InFlight{t, r.request_bytes, r.reply_bytes});
      c.in_flight_bytes += r.request_bytes;
    }
    c.out.seal();
    return more;
  }

  // Writes what the pipe takes. False if the worker is gone.
  bool write_some(Connection& c) {
    for (;;) {
      const ssize_t n = c.out.list().write_to(c.to_fd);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
      }
      if (c.out.empty()) {
        bytes_copied_.fetch_add(c.out.payload_bytes(), std::memory_order_relaxed);
        return true;
      }
    }
  }

  // Reads and handles every reply available now. False if the worker is gone (EOF) or broke
  // the protocol.
  bool read_replies(int slot, Connection& c, const CopyPlan& plan) {
    for (;;) {
      if (c.in_payload && c.begin == c.end && c.payload.remaining() >= kDirectRead) {
        const ssize_t n = c.payload.read_from(c.from_fd);
        if (n > 0) {
          if (c.payload.done()) finish_reply(slot, c, plan);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      }
      if (c.begin == c.end) {
        // Before a large result, read just its header, so the payload can go straight to the
        // output; small replies are read many at a time.
        const bool large_next = !c.in_payload && !c.in_flight.empty() && c.in_flight.front().reply_bytes >= kDirectRead;
        const std::size_t want = large_next ? sizeof(CopyMessage) - c.header_got : kReadBuffer;
        const ssize_t n = ::read(c.from_fd, c.buf.get(), want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        c.begin = 0;
        c.end = static_cast<std::size_t>(n);
      }
      while (c.begin < c.end) {
        if (!c.in_payload) {
          const std::size_t k = std::min(sizeof(CopyMessage) - c.header_got, c.end - c.begin);
          std::memcpy(reinterpret_cast<std::byte*>(&c.msg) + c.header_got, c.buf.get() + c.begin, k);
          c.begin += k;
          c.header_got += k;
          if (c.header_got == sizeof(CopyMessage)) {
            c.header_got = 0;
            if (!start_reply(slot, c, plan)) return false;
          }
        } else {
          c.begin += c.payload.fill_from(c.buf.get() + c.begin, c.end - c.begin);
          if (c.payload.done()) finish_reply(slot, c, plan);
        }
      }
    }
  }

  // A reply's header has arrived: point its payload at where it belongs.
  bool start_reply(int slot, Connection& c, const CopyPlan& plan) {
    const CopyMessage& m = c.msg;
    std::string problem;
    if (m.magic != kCopyMagic || m.job_id != job_.job_id) {
      problem = "a reply that is not of this job";
    } else if (c.in_flight.empty() || m.tile != c.in_flight.front().tile) {
      problem = "a reply for tile " + std::to_string(m.tile) + " out of order";
    } else if (m.kind == CopyKind::result && m.payload_bytes != c.in_flight.front().reply_bytes) {
      problem = "a result of " + std::to_string(m.payload_bytes) + " bytes for tile " + std::to_string(m.tile) + ", expected " +
                std::to_string(c.in_flight.front().reply_bytes);
    } else if (m.kind == CopyKind::error && m.payload_bytes > kMaxErrorText) {
      problem = "an error message of " + std::to_string(m.payload_bytes) + " bytes";
    } else if (m.kind != CopyKind::result && m.kind != CopyKind::error) {
      problem = "a message of kind " + std::to_string(static_cast<unsigned>(m.kind));
    }
    if (!problem.empty()) {
      control_->report_error("copy worker pid " + std::to_string(c.pid) + " (slot " + std::to_string(slot) + ") sent " + problem);
      return false;
    }
    c.payload.clear();
    if (m.kind == CopyKind::result) {
      // A map's tile goes to its box of the output (the iteration space); a reduction's partial
      // rides in the header.
      if (plan.kernel().reduction == Reduction::none) {
        const ArraySpec& out = plan.output();
        std::byte* base = job_.output.data();
        for_each_run(out.shape, dtype_size(out.dtype), plan.grid().box(m.tile),
                     [&](std::size_t offset, std::size_t len) { c.payload.add(base + offset, len); });
      }
    } else {
      c.error_text.assign(m.payload_bytes, '\0');
      c.payload.add(c.error_text.data(), c.error_text.size());
    }
    c.in_payload = true;
    if (c.payload.done()) finish_reply(slot, c, plan);
    return true;
  }

  void finish_reply(int slot, Connection& c, const CopyPlan& plan) {
    c.in_payload = false;
    const InFlight f = c.in_flight.front();
    c.in_flight.pop_front();
    c.in_flight_bytes -= f.request_bytes;
    c.front_since_ns = monotonic_ns();
    if (c.msg.kind == CopyKind::error) {
      control_->report_error(c.error_text);
      return;
    }
    if (plan.kernel().reduction != Reduction::none) control_->partial(f.tile) = TilePartial{c.msg.f64, c.msg.i64};
    bytes_copied_.fetch_add(c.msg.payload_bytes, std::memory_order_relaxed);
    control_->complete_tile(slot, f.tile);
  }

  bool tile_timed_out(const Connection& c) const noexcept {
    if (options_.tile_timeout.count() <= 0 || c.in_flight.empty()) return false;
    return monotonic_ns() - c.front_since_ns > std::chrono::duration_cast<std::chrono::nanoseconds>(options_.tile_timeout).count();
  }

  // The worker is gone: its tiles go back to the queue, a new worker takes its slot, and a tile
  // that keeps killing workers fails the job. Workers run tiles in order, so the oldest tile in
  // flight is the one it died on.
  void worker_died(int slot, Connection& c, const CopyPlan& plan) {
    const std::int64_t tile = c.in_flight.empty() ? -1 : c.in_flight.front().tile;
    const bool timed_out = tile_timed_out(c);
    c.reset_transfers();
    c.setup_job = 0;
    control_->requeue_tiles_of(slot);
    std::string fate = reap_worker(slot);
    // A failed or interrupted job (Ctrl-C reaches the workers too) gets no new worker now: the
    // next job starts one (run_job).
    if (!control_->job_failed() && !interrupted_.load(std::memory_order_acquire)) {
      spawn(slot);
      await_ready(slot);
    }
    if (timed_out) fate += " after the tile timeout of " + std::to_string(options_.tile_timeout.count()) + " ms";
    if (tile < 0) return;
    int failures = 0;
    {
      const std::lock_guard lock(failures_mutex_);
      failures = ++tile_failures_[tile];
    }
    if (failures > options_.max_tile_retries) {
      control_->report_error(std::string(plan.kernel().name) + ": tile " + std::to_string(tile) + " " +
                             format_box(plan.grid().box(tile)) + " killed its copy worker " + std::to_string(failures) +
                             " times (last: " + fate + ")");
    }
  }

  void set_busy(int delta) {
    const std::lock_guard lock(busy_mutex_);
    busy_ += delta;
    if (busy_ == 0) busy_changed_.notify_all();
  }

  void wait_until_idle() {
    std::unique_lock lock(busy_mutex_);
    busy_changed_.wait(lock, [this] { return busy_ == 0; });
  }

  void shutdown() noexcept {
    control_->request_stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    // EOF on stdin ends each worker's loop.
    for (auto& c : connections_) {
      if (c) c->close_pipes();
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    for (auto& c : connections_) {
      if (!c) continue;
      reap_child(c->child, deadline);
    }
    connections_.clear();
  }

  PoolOptions options_;
  std::filesystem::path worker_exe_;
  AnonymousRegion region_;
  ControlBlock* control_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::thread> threads_;
  std::uint64_t next_job_id_ = 1;
  double spawn_s_ = 0;
  CurrentJob job_;
  std::atomic<std::uint64_t> bytes_copied_{0};
  std::atomic<bool> interrupted_{false};  // run() is abandoning the job: do not respawn workers
  std::mutex failures_mutex_;
  std::map<std::int64_t, int> tile_failures_;
  std::mutex busy_mutex_;
  std::condition_variable busy_changed_;
  int busy_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_copy_executor(const PoolOptions& options) { return std::make_unique<CopyExecutor>(options); }

}  // namespace tilepool::detail
