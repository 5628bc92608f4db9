// The runner's end of a copy-mode worker's pipes (see copy_transport.hpp); the worker's end is
// copy_worker.cpp.
#include "tilepool/workers/copy_transport.hpp"

#include <limits.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/fault_guard.hpp"
#include "tilepool/shared/posix_call.hpp"

namespace tilepool {
namespace {

constexpr std::size_t kDirectRun = 1024;                    // input runs this long are written from the array itself
constexpr std::size_t kDirectRead = std::size_t{64} << 10;  // payload remainders this big are read in place
constexpr std::size_t kReadBuffer = std::size_t{256} << 10;
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
    const std::size_t at = staging_.size();
    stage_reserved(n);
    std::memcpy(staging_.data() + at, p, n);
  }
  // Stages bytes of a user's array. A segment truncated under the job faults here (SIGBUS):
  // guard_faults turns that into an Error naming the segment. The buffer is grown before the
  // guarded copy, so a fault abandons nothing but the copy.
  void stage_array_bytes(const std::byte* p, std::size_t n) {
    const std::size_t at = staging_.size();
    stage_reserved(n);
    std::byte* dst = staging_.data() + at;
    guard_faults([&] { std::memcpy(dst, p, n); });
  }
  void direct(const std::byte* p, std::size_t n) { pieces_.push_back(Piece{p, 0, n}); }
  // The pieces not yet written that point into users' arrays, for finding which one faulted.
  void probe_direct_pieces() const {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    for (const Piece& piece : pieces_) {
      if (piece.ptr == nullptr) continue;
      guard_faults([&] {
        for (std::size_t off = 0; off < piece.len; off += page) {
          (void)*static_cast<const volatile std::byte*>(piece.ptr + off);
        }
        (void)*static_cast<const volatile std::byte*>(piece.ptr + piece.len - 1);
      });
    }
  }
  void count_payload(std::size_t n) noexcept { payload_bytes_ += n; }
  // Freezes the batch: the staging buffer will not move any more.
  void seal() {
    list_.clear();
    for (const Piece& p : pieces_) list_.add(p.ptr != nullptr ? p.ptr : staging_.data() + p.offset, p.len);
  }
  [[nodiscard]] IoList& list() noexcept { return list_; }
  [[nodiscard]] std::size_t payload_bytes() const noexcept { return payload_bytes_; }

 private:
  // Appends `n` bytes (to be filled) to the staging buffer and to the batch.
  void stage_reserved(std::size_t n) {
    const std::size_t at = staging_.size();
    staging_.resize(at + n);
    if (!pieces_.empty() && pieces_.back().ptr == nullptr) {
      pieces_.back().len += n;  // staged bytes are contiguous
    } else {
      pieces_.push_back(Piece{nullptr, at, n});
    }
  }

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

}  // namespace

struct CopyChannel::State {
  // The transfer under way.
  ControlBlock* control_ = nullptr;
  int slot_ = 0;
  const CopyJob* job_ = nullptr;
  const JobDescriptor* desc_ = nullptr;  // the control block's: stable while inside the job
  int to_fd_ = -1;    // the worker's stdin
  int from_fd_ = -1;  // the worker's stdout
  std::atomic<std::uint64_t>* bytes_copied_ = nullptr;
  std::uint64_t told_job_ = 0;  // the job whose descriptor this worker has been sent

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

  bool fill_batch();
  bool write_some();
  bool read_replies();
  bool start_reply();
  void finish_reply();
  void reset_transfers() noexcept;
};

CopyChannel::CopyChannel() : s_(std::make_unique<State>()) {}
CopyChannel::~CopyChannel() = default;

CopyChannel::Outcome CopyChannel::transfer(ControlBlock& control, int slot, const CopyJob& job, int to_fd, int from_fd,
                                           const std::function<bool(std::int64_t)>& overdue,
                                           std::atomic<std::uint64_t>& bytes_copied) {
  State& s = *s_;
  s.control_ = &control;
  s.slot_ = slot;
  s.job_ = &job;
  s.desc_ = &control.job();
  s.to_fd_ = to_fd;
  s.from_fd_ = from_fd;
  s.bytes_copied_ = &bytes_copied;
  s.reset_transfers();
  const JobDescriptor& desc = *s.desc_;
  if (s.told_job_ != desc.job_id) {
    const CopyMessage m{.kind = CopyKind::job, .job_id = desc.job_id, .payload_bytes = sizeof desc};
    s.out_.stage(&m, sizeof m);
    s.out_.stage(&desc, sizeof desc);
    s.out_.seal();
    s.told_job_ = desc.job_id;
  }
  const auto max_tiles = static_cast<std::size_t>(desc.dispatch.copy_tiles_in_flight);
  const auto max_bytes = static_cast<std::size_t>(desc.dispatch.copy_bytes_in_flight);
  bool exhausted = false;
  for (;;) {
    // Refill when the batch is written and the pipeline has drained to half: batches, not
    // single tiles, so the syscalls per tile stay few.
    if (s.out_.empty() && !exhausted && s.in_flight_.size() <= max_tiles / 2 &&
        (s.in_flight_.empty() || s.in_flight_bytes_ <= max_bytes / 2)) {
      exhausted = !s.fill_batch();
    }
    if (s.out_.empty() && s.in_flight_.empty()) return Outcome::drained;
    // A failed job (another worker's error, Ctrl-C) is not waited for: a stopped or slow worker
    // must not keep the runner from returning.
    if (control.job_failed()) return Outcome::job_failed;
    pollfd fds[2] = {{from_fd, POLLIN, 0}, {to_fd, static_cast<short>(s.out_.empty() ? 0 : POLLOUT), 0}};
    if (retry_on_eintr([&] { return ::poll(fds, 2, 200); }) < 0) throw system_error("poll on copy worker pipes", errno);
    if (!s.out_.empty() && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP)) != 0 && !s.write_some()) return Outcome::worker_gone;
    if ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) != 0 && !s.read_replies()) return Outcome::worker_gone;
    if (!s.in_flight_.empty() && overdue && overdue(s.front_since_ns_)) return Outcome::overdue;
  }
}

std::int64_t CopyChannel::oldest_tile() const noexcept { return s_->in_flight_.empty() ? -1 : s_->in_flight_.front().tile; }

void CopyChannel::reset() noexcept {
  s_->reset_transfers();
  s_->told_job_ = 0;
}

// Claims tiles for this worker and stages their requests. Returns false once no tile is left.
bool CopyChannel::State::fill_batch() {
  const CopyJob& job = *job_;
  const CopyPlan& plan = *job.plan;
  out_.reset();
  bool more = true;
  // How far ahead of the worker's results: the job's dispatch policy.
  const auto max_tiles = static_cast<std::size_t>(desc_->dispatch.copy_tiles_in_flight);
  const auto max_bytes = static_cast<std::size_t>(desc_->dispatch.copy_bytes_in_flight);
  while (in_flight_.size() < max_tiles && (in_flight_.empty() || in_flight_bytes_ < max_bytes)) {
    const std::int64_t t = control_->claim_next_tile(slot_);
    if (t < 0) {
      more = false;
      break;
    }
    const std::int64_t tile = desc_->grid_tile(t);
    const TileRegions r = plan.regions(tile);
    const CopyMessage m{.kind = CopyKind::tile, .job_id = desc_->job_id, .tile = tile, .payload_bytes = r.request_bytes};
    out_.stage(&m, sizeof m);
    const auto specs = plan.inputs();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::byte* base = job.inputs[i].data();
      for_each_run(specs[i].shape, dtype_size(specs[i].dtype), r.inputs[i], [&](std::size_t offset, std::size_t len) {
        if (len >= kDirectRun) {
          out_.direct(base + offset, len);
        } else {
          out_.stage_array_bytes(base + offset, len);
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
bool CopyChannel::State::write_some() {
  for (;;) {
    const ssize_t n = retry_on_eintr([&] { return out_.list().write_to(to_fd_); });
    if (n < 0 && errno == EFAULT) {
      // writev read a user's array whose segment shrank under the job: find which one (the
      // guard names it), else report the system call's error.
      out_.probe_direct_pieces();
      throw system_error("sending tile bytes to a copy worker", EFAULT);
    }
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (out_.empty()) {
      bytes_copied_->fetch_add(out_.payload_bytes(), std::memory_order_relaxed);
      return true;
    }
  }
}

// Reads and handles every reply available now. False if the worker is gone (EOF) or broke the
// protocol.
bool CopyChannel::State::read_replies() {
  const int fd = from_fd_;
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
bool CopyChannel::State::start_reply() {
  const CopyJob& job = *job_;
  const CopyMessage& m = msg_;
  std::string problem;
  if (m.magic != kCopyMagic || m.job_id != desc_->job_id) {
    problem = "a reply that is not of this job";
  } else if (in_flight_.empty() || m.tile != desc_->grid_tile(in_flight_.front().tile)) {
    problem = fmt::format("a reply for tile {} out of order", m.tile);
  } else if (m.kind == CopyKind::result && m.payload_bytes != in_flight_.front().reply_bytes) {
    problem = fmt::format("a result of {} bytes for tile {}, expected {}", m.payload_bytes, m.tile, in_flight_.front().reply_bytes);
  } else if (m.kind == CopyKind::error && m.payload_bytes > kMaxErrorText) {
    problem = fmt::format("an error message of {} bytes", m.payload_bytes);
  } else if (m.kind == CopyKind::error && !errc_from_wire(m.error_code)) {
    problem = fmt::format("an error of unknown kind {}", m.error_code);
  } else if (m.kind != CopyKind::result && m.kind != CopyKind::error) {
    problem = fmt::format("a message of kind {}", static_cast<unsigned>(m.kind));
  }
  if (!problem.empty()) {
    control_->report_error(fmt::format("copy worker pid {} (slot {}) sent {}", control_->worker(slot_).pid.load(std::memory_order_acquire), slot_, problem));
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

void CopyChannel::State::finish_reply() {
  in_payload_ = false;
  const InFlight f = in_flight_.front();
  in_flight_.pop_front();
  in_flight_bytes_ -= f.request_bytes;
  front_since_ns_ = monotonic_ns();
  ControlBlock& control = *control_;
  if (msg_.kind == CopyKind::error) {
    control.report_error(error_text_, *errc_from_wire(msg_.error_code), msg_.error_errno);  // checked in start_reply
    return;
  }
  if (job_->plan->kernel().reduction != Reduction::none) control.partial(f.tile) = msg_.partial;
  bytes_copied_->fetch_add(msg_.payload_bytes, std::memory_order_relaxed);
  control.complete_tile(slot_, f.tile);
}

void CopyChannel::State::reset_transfers() noexcept {
  out_.reset();
  in_flight_.clear();
  in_flight_bytes_ = 0;
  begin_ = end_ = 0;
  header_got_ = 0;
  in_payload_ = false;
  payload_.clear();
}

}  // namespace tilepool
