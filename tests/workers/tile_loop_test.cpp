// The tile loop every worker runs (workers/src/tile_loop.cpp): serve_jobs on threads over a
// control block in plain memory, with LocalJobHandler and a TileObserver that records or
// scripts each tile, or with a handler of the test's own.
#include "tilepool/workers/tile_loop.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

// A map that fails on the tile whose box starts at (2, 2) and writes nothing elsewhere.
class FailsAtTwoTwo final : public BoundKernel {
 public:
  void run_tile(const Box& box, TileResult& /*result*/) override {
    if (box.lo[0] == 2 && box.lo[1] == 2) throw Error(Errc::bad_input, "no value here");
  }
};

const KernelDef kFailsAtTwoTwo{
    .name = "test_tile_loop_fails_at_2_2",
    .summary = "fails on the tile at (2, 2) (a test kernel)",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) { return inputs[0]; },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray>, const AnyArray&, const Params&) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<FailsAtTwoTwo>();
    },
};
const bool kRegistered = (register_kernel(kFailsAtTwoTwo), true);

/// A control block in plain memory, an 8x8 float64 input of 1..64 and an output, and worker
/// threads that the fixture stops and joins.
class TileLoopTest : public ::testing::Test {
 protected:
  static constexpr int kWorkers = 3;

  TileLoopTest() {
    const std::size_t bytes = ControlBlock::bytes_for(64, kWorkers);
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, 64, kWorkers);
    arrays_.inputs.push_back(allocate_array(DType::float64, {8, 8}, Sharing::private_to_process));
    arrays_.output = allocate_array(DType::float64, {8, 8}, Sharing::private_to_process);
    for (int i = 0; i < 64; ++i) in(i) = i + 1;
  }
  ~TileLoopTest() override { stop(); }

  /// A job of `kernel` over the 8x8 arrays in 2x2 tiles (16 tiles; grid tile 5 is [2:4, 2:4]),
  /// or the grid tiles [first, first + count).
  static JobDescriptor job(std::uint64_t id, std::string_view kernel = "negate", std::int64_t first = 0, std::int64_t count = 16) {
    JobDescriptor d;
    d.job_id = id;
    JobDescriptor::set_text(d.kernel, sizeof d.kernel, kernel, "kernel");
    d.input_count = 1;
    d.ndim = 2;
    d.shape[0] = d.shape[1] = 8;
    d.tile_ndim = 2;
    d.tile[0] = d.tile[1] = 2;
    d.first_tile = first;
    d.tile_count = count;
    return d;
  }

  /// A LocalJobHandler over the fixture's arrays.
  std::unique_ptr<LocalJobHandler> local_handler(LocalJobHandler::TileObserver observer = {}) {
    return std::make_unique<LocalJobHandler>([this](const JobDescriptor&) { return arrays_; }, std::move(observer));
  }
  /// Runs serve_jobs in a thread for each handler, slot by slot.
  void serve(std::vector<std::unique_ptr<JobHandler>> handlers) {
    handlers_ = std::move(handlers);
    for (std::size_t slot = 0; slot < handlers_.size(); ++slot) {
      threads_.emplace_back([this, slot] { serve_jobs(*control_, static_cast<int>(slot), *handlers_[slot]); });
    }
  }
  /// Waits until the posted job completes or fails (at most a few seconds).
  void await_job() {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!control_->job_complete() && !control_->job_failed() && std::chrono::steady_clock::now() < deadline) {
      control_->wait_for_progress(10ms);
    }
  }
  void stop() {
    control_->request_stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  double& in(int i) { return reinterpret_cast<double*>(arrays_.inputs[0].data())[i]; }
  double& out(int i) { return reinterpret_cast<double*>(arrays_.output.data())[i]; }
  ControlBlock& control() { return *control_; }

 private:
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  JobArrays arrays_;
  std::vector<std::unique_ptr<JobHandler>> handlers_;
  std::vector<std::thread> threads_;
};

TEST_F(TileLoopTest, EveryTileIsClaimedExactlyOnceAcrossWorkers) {
  std::vector<std::atomic<int>> claims(16);
  std::vector<std::unique_ptr<JobHandler>> handlers;
  for (int slot = 0; slot < kWorkers; ++slot) {
    handlers.push_back(local_handler([&](TilePoint point, std::int64_t tile) {
      if (point == TilePoint::claimed) claims[static_cast<std::size_t>(tile)].fetch_add(1);
    }));
  }
  serve(std::move(handlers));

  control().post_job(job(1));
  await_job();

  ASSERT_TRUE(control().job_complete()) << control().error_message();
  for (std::size_t t = 0; t < claims.size(); ++t) EXPECT_EQ(claims[t].load(), 1) << "tile " << t;
  for (int i = 0; i < 64; ++i) EXPECT_EQ(out(i), -in(i)) << "element " << i;
}

TEST_F(TileLoopTest, RangedJobRunsOnlyItsGridTiles) {
  std::mutex mutex;
  std::set<std::int64_t> ran;
  std::vector<std::unique_ptr<JobHandler>> handlers;
  for (int slot = 0; slot < kWorkers; ++slot) {
    handlers.push_back(local_handler([&](TilePoint point, std::int64_t tile) {
      const std::lock_guard lock(mutex);
      if (point == TilePoint::written) ran.insert(tile);
    }));
  }
  serve(std::move(handlers));

  control().post_job(job(1, "negate", /*first=*/4, /*count=*/4));
  await_job();

  ASSERT_TRUE(control().job_complete()) << control().error_message();
  const std::lock_guard lock(mutex);
  EXPECT_EQ(ran, (std::set<std::int64_t>{4, 5, 6, 7}));
}

TEST_F(TileLoopTest, KernelExceptionBecomesTheJobsErrorNamingKernelTileAndBox) {
  ASSERT_TRUE(kRegistered);
  std::vector<std::unique_ptr<JobHandler>> handlers;
  for (int slot = 0; slot < kWorkers; ++slot) handlers.push_back(local_handler());
  serve(std::move(handlers));

  control().post_job(job(1, kFailsAtTwoTwo.name));
  await_job();

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("kernel test_tile_loop_fails_at_2_2 failed on tile 5 [2:4, 2:4] in worker pid " + std::to_string(::getpid()) +
                   ": no value here"),
            std::string::npos)
      << m;
}

TEST_F(TileLoopTest, HandlerExceptionBecomesTheJobsErrorNamingTheWorkerSlot) {
  std::vector<std::unique_ptr<JobHandler>> handlers;
  handlers.push_back(local_handler([](TilePoint point, std::int64_t) {
    if (point == TilePoint::claimed) throw std::runtime_error("lost the scratch file");
  }));
  serve(std::move(handlers));

  control().post_job(job(1));
  await_job();

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("kernel negate, worker pid " + std::to_string(::getpid()) + ": lost the scratch file"), std::string::npos) << m;
}

TEST_F(TileLoopTest, JobThatCannotBeBoundFailsNamingTheKernelAndRunsNoTile) {
  std::atomic<int> tiles{0};
  std::vector<std::unique_ptr<JobHandler>> handlers;
  handlers.push_back(std::make_unique<LocalJobHandler>(
      [](const JobDescriptor&) -> JobArrays { throw Error(Errc::bad_input, "segment 'x' is gone"); },
      [&](TilePoint, std::int64_t) { tiles.fetch_add(1); }));
  serve(std::move(handlers));

  control().post_job(job(1));
  await_job();

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("could not set up kernel negate: segment 'x' is gone"), std::string::npos) << m;
  EXPECT_EQ(tiles.load(), 0);
}

/// Counts binds and runs; its first run claims one tile and returns without completing it (the
/// test then puts it back, as the supervisor does for a dead worker's tiles).
class CountingHandler final : public JobHandler {
 public:
  void bind(const JobDescriptor& /*job*/) override { binds.fetch_add(1); }
  void release() override { releases.fetch_add(1); }
  void run(ControlBlock& control, int slot) override {
    if (runs.load() == 0) {
      (void)control.claim_next_tile(slot);
      runs.fetch_add(1);
      return;
    }
    runs.fetch_add(1);
    for (std::int64_t t; (t = control.claim_next_tile(slot)) >= 0;) control.complete_tile(slot, t);
  }
  std::atomic<int> binds{0};
  std::atomic<int> releases{0};
  std::atomic<int> runs{0};
};

// A worker binds the job each time it enters it and releases what it bound before it leaves,
// inside the job (a kernel's destructor is part of the job): a worker that enters again after
// tiles were requeued binds again.
TEST_F(TileLoopTest, JobIsBoundAndReleasedEachTimeAWorkerEntersItAndRunAgainWhenTilesAreRequeued) {
  auto owned = std::make_unique<CountingHandler>();
  CountingHandler& handler = *owned;
  std::vector<std::unique_ptr<JobHandler>> handlers;
  handlers.push_back(std::move(owned));
  serve(std::move(handlers));
  control().post_job(job(1));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (handler.runs.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);

  ASSERT_EQ(control().requeue_tiles_of(0), 1);  // the tile it claimed goes back
  await_job();

  ASSERT_TRUE(control().job_complete()) << control().error_message();
  EXPECT_EQ(handler.runs.load(), 2);
  EXPECT_EQ(handler.binds.load(), 2);
  ASSERT_TRUE(control().wait_until_idle(5s));  // it left, having released
  EXPECT_EQ(handler.releases.load(), 2);
  control().post_job(job(2));
  await_job();
  ASSERT_TRUE(control().wait_until_idle(5s));
  EXPECT_EQ(handler.binds.load(), 3);
  EXPECT_EQ(handler.releases.load(), 3);
}

TEST_F(TileLoopTest, LoopReturnsWhenTheControlBlockAsksWorkersToStop) {
  auto handler = local_handler();
  auto loop = std::async(std::launch::async, [&] { serve_jobs(control(), 0, *handler); });
  ASSERT_EQ(loop.wait_for(50ms), std::future_status::timeout);  // idle, waiting for a job

  control().request_stop();

  EXPECT_EQ(loop.wait_for(2s), std::future_status::ready);
}

TEST_F(TileLoopTest, LoopReturnsWhenItsHandlerIsNoLongerWanted) {
  std::atomic<bool> wanted{true};
  LocalJobHandler handler([](const JobDescriptor&) { return JobArrays{}; }, {}, [&] { return wanted.load(); });
  auto loop = std::async(std::launch::async, [&] { serve_jobs(control(), 0, handler); });
  ASSERT_EQ(loop.wait_for(50ms), std::future_status::timeout);

  wanted.store(false);  // the parent is gone, say

  EXPECT_EQ(loop.wait_for(2s), std::future_status::ready);  // checked between idle waits of 500 ms
  if (loop.wait_for(0s) != std::future_status::ready) control().request_stop();
}

TEST(FormatBoxTest, WritesEachAxisAsAHalfOpenRange) {
  Box box;
  box.ndim = 3;
  box.lo = {0, 0, 4};
  box.hi = {365, 4, 8};

  EXPECT_EQ(format_box(box), "[0:365, 0:4, 4:8]");
}

}  // namespace
}  // namespace tilepool
