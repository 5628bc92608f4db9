// A copy-mode worker process. It shares no memory with the runner: the bytes of the input
// regions each tile reads arrive on stdin, the kernel runs on windows (AnyArray::window) of
// local buffers holding exactly those regions, and the tile's output bytes go back on stdout
// (wire format: tilepool/workers/copy_protocol.hpp).
//
// Tiles are answered in the order they arrive. Small replies are batched and flushed before
// the worker would block reading, so the runner sees them as soon as the worker runs dry; large
// payloads are read and written directly from and to the local arrays (no staging copy).
#include "copy_worker.hpp"
#include "bind_checked.hpp"
#include "region_window.hpp"

#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/posix_call.hpp"
#include "tilepool/workers/copy_protocol.hpp"
#include "tilepool/workers/tile_loop.hpp"
#include "tilepool/workers/worker.hpp"

namespace tilepool {
namespace {

constexpr std::size_t kInputBuffer = std::size_t{1} << 20;
constexpr std::size_t kDirectRead = std::size_t{64} << 10;   // payload parts this big are read in place
constexpr std::size_t kDirectWrite = std::size_t{64} << 10;  // payloads this big skip the batch buffer
constexpr std::size_t kFlushAt = std::size_t{256} << 10;

// The runner is gone (EOF mid-message or a broken pipe): nothing to clean up, leave quietly.
[[noreturn]] void runner_gone() { std::_Exit(0); }

// A protocol violation: a runner/worker mismatch, not a user error.
[[noreturn]] void protocol_error(const std::string& what) {
  std::fprintf(stderr, "tilepool-worker copy: protocol error: %s\n", what.c_str());
  std::_Exit(2);
}

// stdin, buffered: small messages come out of one read, large payloads are read in place.
class RequestReader {
 public:
  explicit RequestReader(int fd) : fd_(fd), buf_(new std::byte[kInputBuffer]) {}

  // Reads exactly `n` bytes into `dst`, calling `before_block` before any read that may block;
  // a refill reads at most `chunk` bytes. Returns false on EOF before the first byte when `eof_ok`.
  bool read_exact(void* dst, std::size_t n, const std::function<void()>& before_block, bool eof_ok = false,
                  std::size_t chunk = kInputBuffer) {
    auto* out = static_cast<std::byte*>(dst);
    std::size_t got = 0;
    while (got < n) {
      if (begin_ < end_) {
        const std::size_t k = std::min(end_ - begin_, n - got);
        std::memcpy(out + got, buf_.get() + begin_, k);
        begin_ += k;
        got += k;
        continue;
      }
      before_block();
      const bool direct = n - got >= kDirectRead;
      const ssize_t r = retry_on_eintr(
          [&] { return direct ? ::read(fd_, out + got, n - got) : ::read(fd_, buf_.get(), std::min(chunk, kInputBuffer)); });
      if (r < 0) protocol_error(fmt::format("read from the runner: {}", std::strerror(errno)));
      if (r == 0) {
        if (got == 0 && eof_ok) return false;
        runner_gone();
      }
      if (direct) {
        got += static_cast<std::size_t>(r);
      } else {
        begin_ = 0;
        end_ = static_cast<std::size_t>(r);
      }
    }
    return true;
  }

 private:
  int fd_;
  std::unique_ptr<std::byte[]> buf_;
  std::size_t begin_ = 0, end_ = 0;
};

// stdout, batched: replies gather in a buffer; one writev sends the batch and a large payload.
class ReplyWriter {
 public:
  explicit ReplyWriter(int fd) : fd_(fd) { batch_.reserve(kFlushAt + kDirectWrite); }

  void send(const CopyMessage& header, const std::byte* payload, std::size_t bytes) {
    if (bytes >= kDirectWrite) {
      append(&header, sizeof header);
      iovec iov[2] = {{batch_.data(), batch_.size()}, {const_cast<std::byte*>(payload), bytes}};
      write_all(iov, 2);
      batch_.clear();
      return;
    }
    append(&header, sizeof header);
    append(payload, bytes);
    if (batch_.size() >= kFlushAt) flush();
  }

  void flush() {
    if (batch_.empty()) return;
    iovec iov{batch_.data(), batch_.size()};
    write_all(&iov, 1);
    batch_.clear();
  }

 private:
  void append(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    batch_.insert(batch_.end(), b, b + n);
  }

  void write_all(iovec* iov, int count) {
    while (count > 0) {
      const ssize_t w = retry_on_eintr([&] { return ::writev(fd_, iov, count); });
      if (w < 0 && errno == EPIPE) runner_gone();
      if (w < 0) protocol_error(fmt::format("write to the runner: {}", std::strerror(errno)));
      auto left = static_cast<std::size_t>(w);
      while (count > 0 && left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --count;
      }
      if (count > 0) {
        iov->iov_base = static_cast<std::byte*>(iov->iov_base) + left;
        iov->iov_len -= left;
      }
    }
  }

  int fd_;
  std::vector<std::byte> batch_;
};

// The worker's state across messages: the current job and its bound kernel.
class CopyWorker {
 public:
  explicit CopyWorker(LocalJobHandler::TileObserver observer)
      : in_(STDIN_FILENO), out_(STDOUT_FILENO), observer_(std::move(observer)) {}

  int serve() {
    say_ready();
    const auto flush = [this] { out_.flush(); };
    for (;;) {
      CopyMessage m;
      // After a large request the next is likely large too: read just its header, so its
      // payload can be read straight into the local arrays.
      const std::size_t chunk = last_request_bytes_ >= kDirectRead ? sizeof m : kInputBuffer;
      if (!in_.read_exact(&m, sizeof m, flush, /*eof_ok=*/true, chunk)) {
        out_.flush();
        return 0;
      }
      if (m.magic != kCopyMagic) protocol_error("bad message magic");
      last_request_bytes_ = m.payload_bytes;
      switch (m.kind) {
        case CopyKind::job: start_job(m); break;
        case CopyKind::tile: run_tile(m); break;
        default: protocol_error(fmt::format("unexpected message kind {}", static_cast<unsigned>(m.kind)));
      }
    }
  }

 private:
  void start_job(const CopyMessage& m) {
    if (m.payload_bytes != sizeof(JobDescriptor)) protocol_error(fmt::format("job descriptor of {} bytes", m.payload_bytes));
    auto job = std::make_unique<JobDescriptor>();
    in_.read_exact(job.get(), sizeof *job, [this] { out_.flush(); });
    job_id_ = job->job_id;
    kernel_name_ = std::string(job->kernel_name());
    plan_.reset();
    setup_error_ = {};
    try {
      plan_ = CopyPlan::from_job(*job);
    } catch (...) {
      setup_error_ = {describe_current_exception(), current_error_code(), current_error_errno()};
    }
  }

  void run_tile(const CopyMessage& m) {
    const auto flush = [this] { out_.flush(); };
    if (m.job_id != job_id_) protocol_error(fmt::format("tile of job {} during job {}", m.job_id, job_id_));
    if (!plan_) {
      discard(m.payload_bytes);
      reply_error(m.tile, {fmt::format("worker pid {} could not set up kernel {}: {}", ::getpid(), kernel_name_, setup_error_.text),
                           setup_error_.code, setup_error_.sys_errno});
      return;
    }
    if (m.tile < 0 || m.tile >= plan_->grid().tile_count()) protocol_error(fmt::format("tile {} out of range", m.tile));
    const TileRegions r = plan_->regions(m.tile);
    if (m.payload_bytes != r.request_bytes) {
      protocol_error(fmt::format("tile {} carries {} bytes, expected {}", m.tile, m.payload_bytes, r.request_bytes));
    }
    const auto specs = plan_->inputs();
    std::vector<AnyArray> inputs;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::size_t bytes = box_bytes(r.inputs[i], dtype_size(specs[i].dtype));
      std::byte* data = input_buffers_[i].reserve(bytes);
      in_.read_exact(data, bytes, flush);
      inputs.push_back(AnyArray::window(input_buffers_[i].data, data, specs[i].dtype, specs[i].shape, r.inputs[i], static_cast<int>(i)));
    }
    // A map writes its tile's box of the output; a reduction's 0-d output is the runner's.
    const ArraySpec& out = plan_->output();
    std::byte* out_data = output_buffer_.reserve(std::max(r.reply_bytes, dtype_size(out.dtype)));
    const AnyArray output = plan_->kernel().reduction == Reduction::none
                                ? AnyArray::window(output_buffer_.data, out_data, out.dtype, out.shape, r.tile, kOutputWindow)
                                : AnyArray(output_buffer_.data, out_data, out.dtype, out.shape);
    TileResult result;
    if (observer_) observer_(TilePoint::claimed, m.tile);
    bool bound = false;
    try {
      const std::unique_ptr<BoundKernel> kernel = bind_checked(plan_->kernel(), inputs, output, plan_->params());
      bound = true;
      kernel->run_tile(r.tile, result);
    } catch (...) {  // a std::exception, or whatever else a plugin throws ("text", 42)
      if (catching_thread_exit()) {
        // pthread_exit(): its unwinding may not be dropped, and this thread is the process's.
        reply_error(m.tile, {fmt::format("kernel {} called pthread_exit() on tile {} {} in worker pid {} (a kernel must return "
                                         "or throw)", kernel_name_, m.tile, format_box(r.tile), ::getpid())});
        out_.flush();
        std::_Exit(1);
      }
      // As in the other modes: binding (the kernel's setup) keeps its error's kind; a tile that
      // fails is a failed job.
      reply_error(m.tile, {fmt::format("kernel {} failed on tile {} {} in worker pid {}: {}", kernel_name_, m.tile,
                                       format_box(r.tile), ::getpid(), describe_current_exception()),
                           bound ? Errc::job_failed : current_error_code(), current_error_errno()});
      return;
    }
    if (observer_) observer_(TilePoint::written, m.tile);
    const CopyMessage reply{.kind = CopyKind::result, .job_id = job_id_, .tile = m.tile, .payload_bytes = r.reply_bytes,
                            .partial = result};
    out_.send(reply, out_data, r.reply_bytes);
  }

  // An error as it crosses the pipe: its words, its kind and its errno.
  struct WorkerError {
    std::string text;
    Errc code = Errc::job_failed;
    int sys_errno = 0;
  };

  // Cut to what the runner's control block holds: a longer message would only be cut there.
  void reply_error(std::int64_t tile, const WorkerError& error) {
    const std::string text = cut_message(error.text, kMessageCapacity - 1);
    const CopyMessage reply{.kind = CopyKind::error, .job_id = job_id_, .tile = tile, .payload_bytes = text.size(),
                            .error_code = static_cast<std::int32_t>(error.code), .error_errno = error.sys_errno};
    out_.send(reply, reinterpret_cast<const std::byte*>(text.data()), text.size());
  }

  void discard(std::uint64_t bytes) {
    std::vector<std::byte> sink(std::min<std::uint64_t>(bytes, kInputBuffer));
    while (bytes > 0) {
      const std::size_t k = std::min<std::uint64_t>(bytes, sink.size());
      in_.read_exact(sink.data(), k, [this] { out_.flush(); });
      bytes -= k;
    }
  }

  RequestReader in_;
  ReplyWriter out_;
  LocalJobHandler::TileObserver observer_;  // make_tile_observer()'s, or empty
  std::uint64_t last_request_bytes_ = 0;
  std::uint64_t job_id_ = 0;
  std::string kernel_name_;
  std::optional<CopyPlan> plan_;
  WorkerError setup_error_;  // why plan_ is empty
  std::array<LocalBuffer, kMaxInputs> input_buffers_;
  LocalBuffer output_buffer_;
};

}  // namespace

int run_copy_worker(pid_t parent) {
  die_with_parent(parent, /*watch_stdin=*/false);  // stdin is the request stream: EOF ends serve()
  // A runner's I/O thread may have spawned us with SIGPIPE blocked; a closed pipe is EPIPE either way.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::sigprocmask(SIG_UNBLOCK, &pipe_signal, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Errors before "ready" (a tile observer that cannot be made) reach the runner through
  // serve_as_worker_if_asked.
  CopyWorker worker(make_tile_observer());
  try {
    return worker.serve();
  } catch (...) {
    std::fprintf(stderr, "tilepool-worker copy: error: %s\n", describe_current_exception().c_str());
    return 2;
  }
}

}  // namespace tilepool
