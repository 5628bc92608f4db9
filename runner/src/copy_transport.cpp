// copy mode's launcher and transport: worker processes (WorkerProcess, `copy` arguments) that
// share nothing with the runner. The bytes of the region of each input that a tile reads (the
// kernel's declared input region) go down the worker's stdin and the tile's output comes back on
// its stdout; the runner assembles the output. This is what Python's pool.map over slices does
// (pickling each slice), measured honestly: every array byte crosses a pipe, and
// JobStats::bytes_copied counts them. The worker's side is workers/src/copy_worker.cpp; the wire
// format is tilepool/workers/copy_protocol.hpp.
//
// Dispatch still goes through a ControlBlock (in private memory, as in threads mode): one I/O
// thread per worker runs serve_jobs with a Connection as its JobHandler, claims tiles for its
// worker and keeps several in flight, so the pipe never runs dry while the worker computes.
//  - requests are batched: one writev carries many tiles' headers and rows; long rows are
//    written straight from the input arrays, short ones gathered into one staging buffer;
//  - replies are read in large chunks and copied to their place in the output; a large payload's
//    remainder is read straight into the output rows (readv, no staging copy);
//  - the pipes are enlarged to 1 MiB so a batch fits.
// A worker that dies is reported to the Supervisor (its tiles go back to the queue) and replaced.
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <fmt/format.h>
#include <mutex>
#include <optional>
#include <thread>

#include "detail/launcher.hpp"
#include "detail/supervisor.hpp"
#include "detail/worker_process.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/workers/copy_protocol.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {
namespace {

constexpr int kPipeBytes = 1 << 20;                         // asked of F_SETPIPE_SZ (the default limit)
constexpr std::size_t kDirectRun = 1024;                    // input runs this long are written from the array itself
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

// The current job as the I/O threads see it: written only inside post_job's quiet window.
struct CopyJob {
  std::uint64_t job_id = 0;
  std::optional<CopyPlan> plan;
  std::vector<AnyArray> inputs;
  AnyArray output;
  CopyJobSetup setup;
};

class CopyLauncher;

// One worker process and the transfers to and from it: the JobHandler its I/O thread runs.
class Connection final : public JobHandler {
 public:
  Connection(CopyLauncher& owner, int slot) : owner_(owner), slot_(slot) {}
  void bind(const JobDescriptor& job) override;
  void run(ControlBlock& control, int slot) override;

  void start_worker();
  [[nodiscard]] WorkerProcess* process() const noexcept { return worker_.get(); }

 private:
  void transfer();
  bool fill_batch();
  bool write_some();
  bool read_replies();
  bool start_reply();
  void finish_reply();
  bool tile_overdue() const noexcept;
  void worker_died();
  void reset_transfers() noexcept;

  CopyLauncher& owner_;
  const int slot_;
  std::unique_ptr<WorkerProcess> worker_;
  std::uint64_t setup_job_ = 0;  // the job whose setup this worker has been sent

  Outbox out_;
  std::deque<InFlight> in_flight_;
  std::size_t in_flight_bytes_ = 0;
  std::int64_t front_since_ns_ = 0;  // when the oldest tile in flight became the oldest

  // Replies being parsed.
  std::unique_ptr<std::byte[]> buf_{new std::byte[kReadBuffer]};
  std::size_t begin_ = 0, end_ = 0;
  CopyMessage msg_;
  std::size_t header_got_ = 0;
  bool in_payload_ = false;
  IoList payload_;
  std::string error_text_;
};

class CopyLauncher final : public Launcher {
 public:
  CopyLauncher(const PoolOptions& options, Supervisor& supervisor)
      : options_(options),
        supervisor_(supervisor),
        worker_exe_(find_worker_executable(options)),
        memory_(allocate_bytes(ControlBlock::bytes_for(options.tile_capacity), Sharing::private_to_process)),
        control_(ControlBlock::create_in(memory_.get(), ControlBlock::bytes_for(options.tile_capacity), options.tile_capacity)) {
    for (int slot = 0; slot < options.workers; ++slot) connections_.push_back(std::make_unique<Connection>(*this, slot));
    const auto t0 = std::chrono::steady_clock::now();
    try {
      for (auto& c : connections_) c->start_worker();
    } catch (...) {
      stop();
      throw;
    }
    spawn_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int slot = 0; slot < options.workers; ++slot) {
      threads_.emplace_back([this, slot] {
        // A write to a dead worker's pipe must be EPIPE here, not a process-wide SIGPIPE.
        sigset_t pipe_signal;
        sigemptyset(&pipe_signal);
        sigaddset(&pipe_signal, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);
        serve_jobs(*control_, slot, *connections_[static_cast<std::size_t>(slot)]);
      });
    }
  }
  ~CopyLauncher() override { stop(); }

  Mode mode() const noexcept override { return Mode::copy; }
  int worker_count() const noexcept override { return static_cast<int>(connections_.size()); }
  std::int64_t tile_capacity() const noexcept override { return options_.tile_capacity; }
  double spawn_seconds() const noexcept override { return spawn_s_; }
  std::uint64_t bytes_copied() const noexcept override { return bytes_copied_.load(std::memory_order_relaxed); }
  ControlBlock& control_for(std::int64_t /*tiles*/) override { return *control_; }

  void bind(const JobRequest& job, const PreparedJob& prepared) override {
    std::vector<ArraySpec> specs;
    job_.inputs.clear();
    for (const JobArray& in : job.inputs) {
      specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
      job_.inputs.push_back(in.array);
    }
    job_.job_id = control_->job().job_id;
    job_.plan = CopyPlan::make(*prepared.kernel, specs, prepared.output, prepared.grid);
    job_.setup = CopyPlan::setup(job_.job_id, *prepared.kernel, specs, prepared.output, job.tile, job.params);
    job_.output = job.output.array;
    bytes_copied_.store(0, std::memory_order_relaxed);
  }

  void end_job(bool abandoned) noexcept override {
    if (!abandoned) return;
    // Failed or interrupted: no more tiles are handed out, and the I/O threads drain the
    // replies of tiles still in flight into the output. Let them finish before the caller may
    // free it.
    interrupted_.store(true, std::memory_order_release);
    control_->report_error("job stopped");  // the first error's text stays, if there was one
    std::unique_lock lock(busy_mutex_);
    busy_changed_.wait(lock, [this] { return busy_ == 0; });
    interrupted_.store(false, std::memory_order_release);
  }

  // Safe to call from another thread while a job runs.
  std::vector<pid_t> worker_pids() const override {
    std::vector<pid_t> pids;
    for (int slot = 0; slot < worker_count(); ++slot) {
      if (const pid_t pid = control_->worker(slot).pid.load(std::memory_order_acquire); pid > 0) pids.push_back(pid);
    }
    return pids;
  }

 private:
  friend class Connection;

  void set_busy(int delta) {
    const std::lock_guard lock(busy_mutex_);
    busy_ += delta;
    if (busy_ == 0) busy_changed_.notify_all();
  }

  void stop() noexcept {
    control_->request_stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::vector<WorkerProcess*> workers;
    for (auto& c : connections_) workers.push_back(c->process());
    stop_all(workers, std::chrono::seconds(2));  // EOF on stdin ends each worker's loop
  }

  PoolOptions options_;
  Supervisor& supervisor_;
  std::filesystem::path worker_exe_;
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::thread> threads_;
  double spawn_s_ = 0;
  CopyJob job_;
  std::atomic<std::uint64_t> bytes_copied_{0};
  std::atomic<bool> interrupted_{false};  // the job is being abandoned: do not replace workers
  std::mutex busy_mutex_;
  std::condition_variable busy_changed_;
  int busy_ = 0;
};

void Connection::start_worker() {
  worker_.reset();  // reaps the dead one first: its pid may be reused
  owner_.control_->worker(slot_).pid.store(0, std::memory_order_release);
  worker_ = WorkerProcess::start(owner_.worker_exe_, {"copy", "--parent", std::to_string(::getpid())});
  worker_->await_ready(fmt::format("copy worker {}", slot_));
  // From now on the I/O thread never blocks on a pipe.
  for (const int fd : {worker_->stdin_fd(), worker_->stdout_fd()}) {
    (void)::fcntl(fd, F_SETPIPE_SZ, kPipeBytes);  // a smaller pipe still works, just in more steps
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  setup_job_ = 0;
  owner_.control_->worker(slot_).pid.store(worker_->pid(), std::memory_order_release);
}

void Connection::bind(const JobDescriptor& /*job*/) {}  // the setup message goes with the first batch

void Connection::run(ControlBlock& control, int /*slot*/) {
  if (control.job_failed()) return;  // nothing in flight here: nothing to do
  owner_.set_busy(+1);
  try {
    if (!worker_ || worker_->exited()) start_worker();  // died while idle, or in a failed job: no tile to blame
    transfer();
  } catch (...) {
    // A respawn failed, or out of memory; its pipes may be mid-message: a fresh worker next job.
    if (worker_) worker_->kill();
    owner_.set_busy(-1);
    throw;
  }
  owner_.set_busy(-1);
}

// Moves this job's tiles through the worker until none is left for it.
void Connection::transfer() {
  const CopyJob& job = owner_.job_;
  reset_transfers();
  if (setup_job_ != job.job_id) {
    const CopyMessage m{.kind = CopyKind::job, .job_id = job.job_id, .payload_bytes = sizeof(CopyJobSetup)};
    out_.stage(&m, sizeof m);
    out_.stage(&job.setup, sizeof job.setup);
    out_.seal();
    setup_job_ = job.job_id;
  }
  bool exhausted = false;
  for (;;) {
    // Refill when the batch is written and the pipeline has drained to half: batches, not
    // single tiles, so the syscalls per tile stay few.
    if (out_.empty() && !exhausted && in_flight_.size() <= kMaxInflight / 2 &&
        (in_flight_.empty() || in_flight_bytes_ <= kInflightBytes / 2)) {
      exhausted = !fill_batch();
    }
    if (out_.empty() && in_flight_.empty()) return;
    pollfd fds[2] = {{worker_->stdout_fd(), POLLIN, 0}, {worker_->stdin_fd(), static_cast<short>(out_.empty() ? 0 : POLLOUT), 0}};
    if (::poll(fds, 2, 200) < 0 && errno != EINTR) throw system_error("poll on copy worker pipes", errno);
    bool alive = true;
    if (!out_.empty() && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) alive = write_some();
    if (alive && (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0) alive = read_replies();
    if (alive && tile_overdue()) worker_->kill();  // its EOF arrives next
    if (!alive) {
      worker_died();
      return;  // serve_jobs comes back for the requeued tiles
    }
  }
}

// Claims tiles for this worker and stages their requests. Returns false once no tile is left.
bool Connection::fill_batch() {
  const CopyJob& job = owner_.job_;
  const CopyPlan& plan = *job.plan;
  out_.reset();
  bool more = true;
  while (in_flight_.size() < kMaxInflight && (in_flight_.empty() || in_flight_bytes_ < kInflightBytes)) {
    const std::int64_t t = owner_.control_->claim_next_tile(slot_);
    if (t < 0) {
      more = false;
      break;
    }
    const TileRegions r = plan.regions(t);
    const CopyMessage m{.kind = CopyKind::tile, .job_id = job.job_id, .tile = t, .payload_bytes = r.request_bytes};
    out_.stage(&m, sizeof m);
    const auto specs = plan.inputs();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::byte* base = job.inputs[i].data();
      for_each_run(specs[i].shape, dtype_size(specs[i].dtype), r.inputs[i], [&](std::size_t offset, std::size_t len) {
        if (len >= kDirectRun) {
          out_.direct(base + offset, len);
        } else {
          out_.stage(base + offset, len);
        }
      });
    }
    out_.count_payload(r.request_bytes);
    if (in_flight_.empty()) front_since_ns_ = monotonic_ns();
    in_flight_.push_back(InFlight{t, r.request_bytes, r.reply_bytes});
    in_flight_bytes_ += r.request_bytes;
  }
  out_.seal();
  return more;
}

// Writes what the pipe takes. False if the worker is gone.
bool Connection::write_some() {
  for (;;) {
    const ssize_t n = retry_on_eintr([&] { return out_.list().write_to(worker_->stdin_fd()); });
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (out_.empty()) {
      owner_.bytes_copied_.fetch_add(out_.payload_bytes(), std::memory_order_relaxed);
      return true;
    }
  }
}

// Reads and handles every reply available now. False if the worker is gone (EOF) or broke the
// protocol.
bool Connection::read_replies() {
  const int fd = worker_->stdout_fd();
  for (;;) {
    if (in_payload_ && begin_ == end_ && payload_.remaining() >= kDirectRead) {
      const ssize_t n = retry_on_eintr([&] { return payload_.read_from(fd); });
      if (n > 0) {
        if (payload_.done()) finish_reply();
        continue;
      }
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    if (begin_ == end_) {
      // Before a large result, read just its header, so the payload can go straight to the
      // output; small replies are read many at a time.
      const bool large_next = !in_payload_ && !in_flight_.empty() && in_flight_.front().reply_bytes >= kDirectRead;
      const std::size_t want = large_next ? sizeof(CopyMessage) - header_got_ : kReadBuffer;
      const ssize_t n = retry_on_eintr([&] { return ::read(fd, buf_.get(), want); });
      if (n <= 0) return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      begin_ = 0;
      end_ = static_cast<std::size_t>(n);
    }
    while (begin_ < end_) {
      if (!in_payload_) {
        const std::size_t k = std::min(sizeof(CopyMessage) - header_got_, end_ - begin_);
        std::memcpy(reinterpret_cast<std::byte*>(&msg_) + header_got_, buf_.get() + begin_, k);
        begin_ += k;
        header_got_ += k;
        if (header_got_ == sizeof(CopyMessage)) {
          header_got_ = 0;
          if (!start_reply()) return false;
        }
      } else {
        begin_ += payload_.fill_from(buf_.get() + begin_, end_ - begin_);
        if (payload_.done()) finish_reply();
      }
    }
  }
}

// A reply's header has arrived: point its payload at where it belongs.
bool Connection::start_reply() {
  const CopyJob& job = owner_.job_;
  const CopyMessage& m = msg_;
  std::string problem;
  if (m.magic != kCopyMagic || m.job_id != job.job_id) {
    problem = "a reply that is not of this job";
  } else if (in_flight_.empty() || m.tile != in_flight_.front().tile) {
    problem = fmt::format("a reply for tile {} out of order", m.tile);
  } else if (m.kind == CopyKind::result && m.payload_bytes != in_flight_.front().reply_bytes) {
    problem = fmt::format("a result of {} bytes for tile {}, expected {}", m.payload_bytes, m.tile, in_flight_.front().reply_bytes);
  } else if (m.kind == CopyKind::error && m.payload_bytes > kMaxErrorText) {
    problem = fmt::format("an error message of {} bytes", m.payload_bytes);
  } else if (m.kind != CopyKind::result && m.kind != CopyKind::error) {
    problem = fmt::format("a message of kind {}", static_cast<unsigned>(m.kind));
  }
  if (!problem.empty()) {
    owner_.control_->report_error(fmt::format("copy worker pid {} (slot {}) sent {}", worker_->pid(), slot_, problem));
    return false;
  }
  payload_.clear();
  if (m.kind == CopyKind::result) {
    // A map's tile goes to its box of the output; a reduction's partial rides in the header.
    const CopyPlan& plan = *job.plan;
    if (plan.kernel().reduction == Reduction::none) {
      const ArraySpec& out = plan.output();
      std::byte* base = job.output.data();
      for_each_run(out.shape, dtype_size(out.dtype), plan.grid().box(m.tile),
                   [&](std::size_t offset, std::size_t len) { payload_.add(base + offset, len); });
    }
  } else {
    error_text_.assign(m.payload_bytes, '\0');
    payload_.add(error_text_.data(), error_text_.size());
  }
  in_payload_ = true;
  if (payload_.done()) finish_reply();
  return true;
}

void Connection::finish_reply() {
  in_payload_ = false;
  const InFlight f = in_flight_.front();
  in_flight_.pop_front();
  in_flight_bytes_ -= f.request_bytes;
  front_since_ns_ = monotonic_ns();
  ControlBlock& control = *owner_.control_;
  if (msg_.kind == CopyKind::error) {
    control.report_error(error_text_);
    return;
  }
  if (owner_.job_.plan->kernel().reduction != Reduction::none) control.partial(f.tile) = msg_.partial;
  owner_.bytes_copied_.fetch_add(msg_.payload_bytes, std::memory_order_relaxed);
  control.complete_tile(slot_, f.tile);
}

bool Connection::tile_overdue() const noexcept { return !in_flight_.empty() && owner_.supervisor_.overdue(front_since_ns_); }

// The worker is gone: the Supervisor requeues its tiles and judges the tile it died on (workers
// run tiles in order, so that is the oldest in flight), and a new worker takes its slot.
void Connection::worker_died() {
  const std::int64_t tile = in_flight_.empty() ? -1 : in_flight_.front().tile;
  const bool timed_out = tile_overdue();
  reset_transfers();
  worker_->close_pipes();
  worker_->kill();
  worker_->stop(std::chrono::steady_clock::now());
  std::string fate = fmt::format("pid {}, {}", worker_->pid(),
                                 timed_out ? owner_.supervisor_.timeout_fate() : describe_wait_status(worker_->exit_status()));
  owner_.control_->worker(slot_).pid.store(0, std::memory_order_release);
  owner_.supervisor_.worker_died(slot_, tile, fate);
  // A failed or interrupted job (Ctrl-C reaches the workers too) gets no new worker now: the
  // next job starts one (run).
  if (!owner_.control_->job_failed() && !owner_.interrupted_.load(std::memory_order_acquire)) start_worker();
}

void Connection::reset_transfers() noexcept {
  out_.reset();
  in_flight_.clear();
  in_flight_bytes_ = 0;
  begin_ = end_ = 0;
  header_got_ = 0;
  in_payload_ = false;
  payload_.clear();
}

}  // namespace

std::unique_ptr<Launcher> make_copy_launcher(const PoolOptions& options, Supervisor& supervisor) {
  return std::make_unique<CopyLauncher>(options, supervisor);
}

}  // namespace tilepool::detail
