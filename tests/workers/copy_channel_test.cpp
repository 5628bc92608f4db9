// Copy mode's transport (workers/src/copy_transport.cpp), the runner's end of a copy worker's
// pipes, driven directly over real pipes: the worker's end is a peer thread of the test that
// speaks the wire format (copy_protocol.hpp) as scripted — or breaks it — and one test talks to
// a real `tilepool-worker copy` process.
#include "tilepool/workers/copy_transport.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "detail/worker_process.hpp"
#include "tilepool/shared/allocation.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

/// Blocks SIGPIPE in this thread while it lives, so a write to a closed pipe is EPIPE, and
/// discards one that became pending.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;
  ~SigpipeBlocked() {
    const timespec now{0, 0};
    while (::sigtimedwait(&set_, nullptr, &now) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t set_{};
  sigset_t old_{};
};

/// A file descriptor, closed once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_ = -1;
};

/// The worker's end of the pipes, in a thread of the test: blocking reads and writes of
/// whole messages.
class Peer {
 public:
  Peer(int from_runner, int to_runner) : in_(from_runner), out_(to_runner) {}

  /// Reads one message; false at EOF.
  bool read(CopyMessage& header, std::vector<std::byte>& payload) {
    if (!read_exact(&header, sizeof header)) return false;
    payload.resize(header.payload_bytes);
    return read_exact(payload.data(), payload.size());
  }
  void send(const CopyMessage& header, const void* payload = nullptr) {
    write_all(&header, sizeof header);
    if (header.payload_bytes > 0) write_all(payload, header.payload_bytes);
  }
  /// Closes the worker's stdout (the runner reads EOF), as a process that died does.
  void hang_up() { out_.close(); }

 private:
  bool read_exact(void* p, std::size_t n) {
    auto* b = static_cast<std::byte*>(p);
    while (n > 0) {
      const ssize_t r = ::read(in_, b, n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      b += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  }
  void write_all(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    while (n > 0) {
      const ssize_t w = ::write(out_.get(), b, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // the runner closed its end: the test is over
      b += w;
      n -= static_cast<std::size_t>(w);
    }
  }

  int in_;
  Fd out_;
};

CopyMessage result_of(const CopyMessage& request, std::size_t bytes) {
  return CopyMessage{.kind = CopyKind::result, .job_id = request.job_id, .tile = request.tile, .payload_bytes = bytes};
}

/// A control block in plain memory with one worker slot, an 8x8 float64 input of 1..64 and
/// output, a CopyJob of `kernel` over them in 4x4 tiles (tile 0 [0:4, 0:4], 1 [0:4, 4:8],
/// 2 [4:8, 0:4], 3 [4:8, 4:8]), and two pipes whose far ends a peer thread serves.
class CopyChannelTest : public ::testing::Test {
 protected:
  static constexpr int kSlot = 0;
  static constexpr pid_t kPeerPid = 4321;

  CopyChannelTest() {
    const std::size_t bytes = ControlBlock::bytes_for(64, 1);
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, 64, 1);
    control_->worker(kSlot).pid.store(kPeerPid);
    input_ = allocate_array(DType::float64, {8, 8}, Sharing::private_to_process);
    output_ = allocate_array(DType::float64, {8, 8}, Sharing::private_to_process);
    for (int i = 0; i < 64; ++i) reinterpret_cast<double*>(input_.data())[i] = i + 1;
  }
  ~CopyChannelTest() override {
    to_worker_.reset();  // the peer reads EOF and returns
    from_worker_.reset();
    if (peer_.joinable()) peer_.join();
  }

  /// Makes `job_` a job of `kernel` (id `id`) and posts it, described as the runner describes
  /// it, to the control block.
  void post(std::string_view kernel = "negate", std::uint64_t id = 7, const Shape& output_shape = {8, 8}) {
    const KernelDef& k = find_kernel(kernel);
    const std::vector<ArraySpec> specs{ArraySpec{DType::float64, {8, 8}}};
    const ArraySpec out{DType::float64, output_shape};
    if (output_shape.empty()) output_ = allocate_array(DType::float64, {}, Sharing::private_to_process);
    const TileGrid grid = TileGrid::make({8, 8}, Shape{4, 4});
    job_.plan = CopyPlan::make(k, specs, out, grid, Params{});
    job_.inputs = {input_};
    job_.output = output_;
    JobDescriptor desc;
    desc.job_id = id;
    JobDescriptor::set_text(desc.kernel, sizeof desc.kernel, kernel, "kernel name");
    desc.input_count = 1;
    desc.input_arrays[0] = ArrayDescription::of(DType::float64, {8, 8});
    desc.output_array = ArrayDescription::of(DType::float64, output_shape);
    desc.ndim = 2;
    desc.shape[0] = desc.shape[1] = 8;
    desc.tile_ndim = 2;
    desc.tile[0] = desc.tile[1] = 4;
    desc.tile_count = grid.tile_count();
    control_->post_job(desc);
  }

  /// Starts the peer thread running `script` on the worker's ends of the pipes.
  void start_peer(std::function<void(Peer&)> script) {
    int to[2];
    int from[2];
    ASSERT_EQ(::pipe2(to, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(from, O_CLOEXEC), 0);
    to_worker_ = std::make_unique<Fd>(to[1]);
    from_worker_ = std::make_unique<Fd>(from[0]);
    for (const int fd : {to[1], from[0]}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);  // as copy mode sets them
    peer_ = std::thread([script = std::move(script), in = to[0], out = from[1]] {
      const SigpipeBlocked quiet;
      const Fd own_in(in);
      Peer peer(in, out);
      script(peer);
    });
  }

  CopyChannel::Outcome transfer(CopyChannel& channel, const std::function<bool(std::int64_t)>& overdue = {}) {
    return channel.transfer(*control_, kSlot, job_, to_worker_->get(), from_worker_->get(), overdue, bytes_copied_);
  }

  /// The bytes of `box` of the input, in C order.
  std::vector<std::byte> input_bytes(const Box& box) const {
    std::vector<std::byte> bytes;
    for_each_run(input_.shape(), sizeof(double), box, [&](std::size_t offset, std::size_t len) {
      bytes.insert(bytes.end(), input_.data() + offset, input_.data() + offset + len);
    });
    return bytes;
  }
  double out(int row, int col) const { return reinterpret_cast<const double*>(output_.data())[row * 8 + col]; }

  /// The peer's part of a well-behaved worker that answers tile t with reply_bytes of the value
  /// t (whatever the kernel), recording what it was sent.
  struct Recording {
    std::mutex mutex;
    int setups = 0;
    std::vector<std::byte> last_job;  // the last `job` message's payload
    std::map<std::int64_t, std::vector<std::byte>> requests;
  };
  static std::function<void(Peer&)> answer_with_tile_numbers(Recording& rec) {
    return [&rec](Peer& peer) {
      std::optional<CopyPlan> plan;
      CopyMessage m;
      std::vector<std::byte> payload;
      while (peer.read(m, payload)) {
        if (m.kind == CopyKind::job) {
          auto job = std::make_unique<JobDescriptor>();
          if (payload.size() != sizeof *job) return;  // the runner sees EOF: a worker's death
          std::memcpy(job.get(), payload.data(), sizeof *job);
          plan = CopyPlan::from_job(*job);
          const std::lock_guard lock(rec.mutex);
          ++rec.setups;
          rec.last_job = payload;
          continue;
        }
        const std::size_t reply_bytes = plan->regions(m.tile).reply_bytes;
        const std::vector<double> reply(reply_bytes / sizeof(double), static_cast<double>(m.tile));
        {
          const std::lock_guard lock(rec.mutex);
          rec.requests[m.tile] = payload;
        }
        peer.send(result_of(m, reply_bytes), reply.data());
      }
    };
  }

  ControlBlock& control() { return *control_; }

  SigpipeBlocked quiet_;  // the runner's writes to a worker that hung up are EPIPE
  Recording rec_;         // outlives the peer thread
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  AnyArray input_;
  AnyArray output_;
  CopyJob job_;
  std::atomic<std::uint64_t> bytes_copied_{0};
  std::unique_ptr<Fd> to_worker_;
  std::unique_ptr<Fd> from_worker_;
  std::thread peer_;
};

TEST_F(CopyChannelTest, SendsEachTileTheBytesOfTheInputRegionItsKernelDeclares) {
  post("blur3x3");  // reads a one-element halo around its tile
  Recording& rec = rec_;
  start_peer(answer_with_tile_numbers(rec));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  const std::lock_guard lock(rec.mutex);
  ASSERT_EQ(rec.requests.size(), 4u);
  for (const auto& [tile, bytes] : rec.requests) {
    const Box region = job_.plan->regions(tile).inputs[0];
    EXPECT_EQ(region.element_count(), 5 * 5) << "tile " << tile;  // 4x4 and the halo inside the array
    EXPECT_EQ(bytes, input_bytes(region)) << "tile " << tile;
  }
}

TEST_F(CopyChannelTest, PutsEachResultInItsTilesPlaceInTheOutputAndCompletesTheTile) {
  post();
  Recording& rec = rec_;
  start_peer(answer_with_tile_numbers(rec));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  EXPECT_TRUE(control().job_complete());
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 8; ++c) EXPECT_EQ(out(r, c), (r / 4) * 2 + c / 4) << "element (" << r << ", " << c << ")";
  }
}

TEST_F(CopyChannelTest, ReductionsPartialRidesInTheReplyHeader) {
  post("sum", 7, Shape{});
  start_peer([](Peer& peer) {
    CopyMessage m;
    std::vector<std::byte> payload;
    while (peer.read(m, payload)) {
      if (m.kind != CopyKind::tile) continue;
      CopyMessage reply = result_of(m, 0);
      reply.partial.f64 = 100.0 + static_cast<double>(m.tile);
      peer.send(reply);
    }
  });
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  for (std::int64_t t = 0; t < 4; ++t) EXPECT_EQ(control().partial(t).f64, 100.0 + static_cast<double>(t)) << "tile " << t;
}

TEST_F(CopyChannelTest, CountsEveryArrayByteThatCrossesThePipesBothWays) {
  post("blur3x3");
  Recording& rec = rec_;
  start_peer(answer_with_tile_numbers(rec));
  CopyChannel channel;
  std::uint64_t expected = 0;
  for (std::int64_t t = 0; t < 4; ++t) expected += job_.plan->regions(t).request_bytes + job_.plan->regions(t).reply_bytes;

  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  EXPECT_EQ(bytes_copied_.load(), expected);
}

TEST_F(CopyChannelTest, JobMessageIsTheControlBlocksDescriptorByteForByte) {
  post("blur3x3", 9);
  Recording& rec = rec_;
  start_peer(answer_with_tile_numbers(rec));
  CopyChannel channel;

  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  const std::lock_guard lock(rec.mutex);
  ASSERT_EQ(rec.last_job.size(), sizeof(JobDescriptor));
  EXPECT_EQ(std::memcmp(rec.last_job.data(), &control().job(), sizeof(JobDescriptor)), 0);
}

TEST_F(CopyChannelTest, SendsTheJobDescriptorOncePerJobAndAgainAfterReset) {
  Recording& rec = rec_;
  start_peer(answer_with_tile_numbers(rec));
  CopyChannel channel;
  post("negate", 7);
  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);
  post("negate", 7);  // more tiles of the same job (a range, or requeued tiles)
  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);
  {
    const std::lock_guard lock(rec.mutex);
    EXPECT_EQ(rec.setups, 1);
  }

  post("negate", 8);
  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);
  channel.reset();  // a new worker process in the slot
  post("negate", 8);
  ASSERT_EQ(transfer(channel), CopyChannel::Outcome::drained);

  const std::lock_guard lock(rec.mutex);
  EXPECT_EQ(rec.setups, 3);
}

TEST_F(CopyChannelTest, EndOfFileIsTheWorkersDeathNamingTheTileItWasRunning) {
  post();
  start_peer([](Peer& peer) {
    CopyMessage m;
    std::vector<std::byte> payload;
    while (peer.read(m, payload) && m.kind != CopyKind::tile) {
    }
    peer.hang_up();  // died computing its first tile
    while (peer.read(m, payload)) {
    }
  });
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::worker_gone);

  EXPECT_EQ(channel.oldest_tile(), 0);
  EXPECT_FALSE(control().job_failed()) << "a death is the supervisor's to judge: " << control().error_message();
}

/// A peer that answers its first tile with `reply` (and `payload`, if any) and then waits.
std::function<void(Peer&)> answer_first_tile_with(std::function<CopyMessage(const CopyMessage& request)> reply,
                                                  std::vector<std::byte> payload = {}) {
  return [reply = std::move(reply), payload = std::move(payload)](Peer& peer) {
    CopyMessage m;
    std::vector<std::byte> in;
    while (peer.read(m, in) && m.kind != CopyKind::tile) {
    }
    peer.send(reply(m), payload.data());
    while (peer.read(m, in)) {
    }
  };
}

TEST_F(CopyChannelTest, ReplyThatIsNotOfThisJobIsTheWorkersDeathAndFailsTheJobNamingIt) {
  post();
  start_peer(answer_first_tile_with([](const CopyMessage& request) {
    CopyMessage reply = result_of(request, 0);
    reply.magic = 0xBADBAD;
    return reply;
  }));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::worker_gone);

  ASSERT_TRUE(control().job_failed());
  EXPECT_EQ(control().error_message(), "copy worker pid 4321 (slot 0) sent a reply that is not of this job");
}

TEST_F(CopyChannelTest, ReplyForATileOutOfOrderIsTheWorkersDeath) {
  post();
  start_peer(answer_first_tile_with([](const CopyMessage& request) {
    CopyMessage reply = result_of(request, 16 * sizeof(double));
    reply.tile = request.tile + 1;
    return reply;
  }));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::worker_gone);

  ASSERT_TRUE(control().job_failed());
  EXPECT_NE(control().error_message().find("sent a reply for tile 1 out of order"), std::string::npos) << control().error_message();
}

TEST_F(CopyChannelTest, ResultOfTheWrongSizeIsTheWorkersDeath) {
  post();
  start_peer(answer_first_tile_with([](const CopyMessage& request) { return result_of(request, 8); }));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::worker_gone);

  ASSERT_TRUE(control().job_failed());
  EXPECT_NE(control().error_message().find("sent a result of 8 bytes for tile 0, expected 128"), std::string::npos)
      << control().error_message();
}

TEST_F(CopyChannelTest, WorkersErrorReplyFailsTheJobWithItsText) {
  post();
  const std::string text = "kernel negate failed on tile 0 [0:4, 0:4] in worker pid 4321: out of luck";
  std::vector<std::byte> payload(text.size());
  std::memcpy(payload.data(), text.data(), text.size());
  start_peer(answer_first_tile_with(
      [n = text.size()](const CopyMessage& request) {
        return CopyMessage{.kind = CopyKind::error, .job_id = request.job_id, .tile = request.tile, .payload_bytes = n};
      },
      payload));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::job_failed);

  EXPECT_EQ(control().error_message(), text);
}

TEST_F(CopyChannelTest, WorkersErrorReplyKeepsItsKindAndErrno) {
  post();
  const std::string text = "worker pid 4321 could not set up kernel negate: store full";
  std::vector<std::byte> payload(text.size());
  std::memcpy(payload.data(), text.data(), text.size());
  start_peer(answer_first_tile_with(
      [n = text.size()](const CopyMessage& request) {
        return CopyMessage{.kind = CopyKind::error, .job_id = request.job_id, .tile = request.tile, .payload_bytes = n,
                           .error_code = static_cast<std::int32_t>(Errc::no_space), .error_errno = ENOSPC};
      },
      payload));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::job_failed);

  const Error error = control().error();
  EXPECT_EQ(error.code(), Errc::no_space);
  EXPECT_EQ(error.sys_errno(), ENOSPC);
  EXPECT_EQ(std::string(error.what()), text);
}

TEST_F(CopyChannelTest, ErrorOfAnUnknownKindIsTheWorkersDeath) {
  post();
  start_peer(answer_first_tile_with([](const CopyMessage& request) {
    return CopyMessage{.kind = CopyKind::error, .job_id = request.job_id, .tile = request.tile, .error_code = 9999};
  }));
  CopyChannel channel;

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::worker_gone);

  ASSERT_TRUE(control().job_failed());
  EXPECT_NE(control().error_message().find("sent an error of unknown kind 9999"), std::string::npos) << control().error_message();
}

TEST_F(CopyChannelTest, TileOutlivingTheTimeoutEndsTheTransferOverdue) {
  post();
  start_peer([](Peer& peer) {  // reads everything, answers nothing: hung
    CopyMessage m;
    std::vector<std::byte> payload;
    while (peer.read(m, payload)) {
    }
  });
  CopyChannel channel;
  const std::int64_t start = monotonic_ns();

  const auto outcome = transfer(channel, [](std::int64_t since_ns) { return monotonic_ns() - since_ns > 20'000'000; });

  EXPECT_EQ(outcome, CopyChannel::Outcome::overdue);
  EXPECT_GE(monotonic_ns() - start, 20'000'000);
  EXPECT_EQ(channel.oldest_tile(), 0);
}

TEST_F(CopyChannelTest, FailedJobIsNotWaitedFor) {
  post();
  start_peer([](Peer& peer) {  // hung
    CopyMessage m;
    std::vector<std::byte> payload;
    while (peer.read(m, payload)) {
    }
  });
  CopyChannel channel;
  control().report_error("another worker's kernel failed");

  EXPECT_EQ(transfer(channel), CopyChannel::Outcome::job_failed);
}

// The real worker's end of the wire format: `tilepool-worker copy` computes every tile.
TEST_F(CopyChannelTest, RealCopyWorkerComputesEveryTileThroughTheChannel) {
  post("negate");
  auto worker = detail::WorkerProcess::start(std::string(TILEPOOL_BIN_DIR) + "/tilepool-worker",
                                             {"copy", "--parent", std::to_string(::getpid())});
  worker->await_ready("copy worker");
  for (const int fd : {worker->stdin_fd(), worker->stdout_fd()}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  CopyChannel channel;

  const auto outcome = channel.transfer(control(), kSlot, job_, worker->stdin_fd(), worker->stdout_fd(), {}, bytes_copied_);

  EXPECT_EQ(outcome, CopyChannel::Outcome::drained);
  for (int i = 0; i < 64; ++i) {
    EXPECT_EQ(reinterpret_cast<const double*>(output_.data())[i], -(i + 1.0)) << "element " << i;
  }
  worker->stop(std::chrono::steady_clock::now() + 2s);
  EXPECT_EQ(worker->exit_status(), 0);
}

}  // namespace
}  // namespace tilepool
