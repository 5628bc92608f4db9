// The control block's lock-free dispatch, exercised by real threads (and under TSan in CI):
// every tile is handed out exactly once, requeued tiles come back, the first error wins, and a
// new job is never posted while a worker is inside the previous one.
#include "tilepool/shared/control_block.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

/// A control block in aligned heap memory.
class ControlBlockTest : public ::testing::Test {
 protected:
  static constexpr std::int64_t kCapacity = 4096;
  void SetUp() override {
    bytes_ = ControlBlock::bytes_for(kCapacity);
    memory_.reset(static_cast<std::byte*>(std::aligned_alloc(64, (bytes_ + 63) / 64 * 64)));
    control_ = ControlBlock::create_in(memory_.get(), bytes_, kCapacity);
  }
  JobDescriptor job(std::int64_t tiles, std::uint64_t id = 1) const {
    JobDescriptor d;
    d.job_id = id;
    d.tile_count = tiles;
    return d;
  }

  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::size_t bytes_ = 0;
  std::unique_ptr<std::byte, Free> memory_;
  ControlBlock* control_ = nullptr;
};

TEST_F(ControlBlockTest, OpenRefusesMemoryThatIsNotAControlBlock) {
  std::vector<std::byte> junk(bytes_);
  EXPECT_THROW(ControlBlock::open_in(junk.data(), junk.size(), "junk"), Error);
  EXPECT_EQ(ControlBlock::open_in(memory_.get(), bytes_, "cb"), control_);
  EXPECT_THROW(ControlBlock::open_in(memory_.get(), bytes_ - 64, "short"), Error);
}

TEST_F(ControlBlockTest, EveryTileIsClaimedExactlyOnceByConcurrentWorkers) {
  constexpr std::int64_t kTiles = 4000;
  constexpr int kWorkers = 4;
  control_->post_job(job(kTiles));
  std::vector<std::atomic<int>> claims(kTiles);
  std::vector<std::thread> threads;
  for (int slot = 0; slot < kWorkers; ++slot) {
    threads.emplace_back([&, slot] {
      ASSERT_TRUE(control_->enter_job(slot));
      for (std::int64_t t; (t = control_->claim_next_tile(slot)) >= 0;) {
        claims[static_cast<std::size_t>(t)].fetch_add(1);
        control_->complete_tile(slot, t);
      }
      control_->leave_job(slot);
    });
  }
  for (auto& t : threads) t.join();
  for (std::int64_t t = 0; t < kTiles; ++t) ASSERT_EQ(claims[static_cast<std::size_t>(t)].load(), 1) << "tile " << t;
  EXPECT_TRUE(control_->job_complete());
  EXPECT_EQ(control_->tiles_done(), kTiles);
  EXPECT_GT(control_->last_done_ns(), 0);
  EXPECT_GE(control_->last_done_ns(), control_->first_claim_ns());
}

TEST_F(ControlBlockTest, PostThatThrowsInItsQuietWindowPostsNothingAndLeavesTheBlockUsable) {
  control_->post_job(job(4, 1));
  const std::uint32_t epoch = control_->epoch();

  EXPECT_THROW(control_->post_job(job(8, 2), [] { throw std::runtime_error("no"); }), std::runtime_error);

  EXPECT_EQ(control_->epoch(), epoch);  // no worker was woken for it
  ASSERT_TRUE(control_->enter_job(0));   // not stuck "posting"
  EXPECT_EQ(control_->job().job_id, 0u);
  control_->leave_job(0);
  control_->post_job(job(3, 3));
  ASSERT_TRUE(control_->enter_job(0));
  EXPECT_EQ(control_->job().job_id, 3u);
  std::int64_t claimed = 0;
  for (std::int64_t t; (t = control_->claim_next_tile(0)) >= 0; ++claimed) control_->complete_tile(0, t);
  control_->leave_job(0);
  EXPECT_EQ(claimed, 3);
  EXPECT_TRUE(control_->job_complete());
}

TEST_F(ControlBlockTest, RequeuedTilesOfADeadWorkerAreClaimedAgain) {
  control_->post_job(job(10));
  ASSERT_TRUE(control_->enter_job(0));
  // Slot 0 claims three tiles and "dies" holding them.
  std::vector<std::int64_t> held;
  for (int i = 0; i < 3; ++i) held.push_back(control_->claim_next_tile(0));
  EXPECT_EQ(control_->worker(0).current_tile.load(), held.back());
  // Slot 1 finishes everything else.
  for (std::int64_t t; (t = control_->claim_next_tile(1)) >= 0;) control_->complete_tile(1, t);
  EXPECT_FALSE(control_->job_complete());
  EXPECT_EQ(control_->requeue_tiles_of(0), 3);
  std::vector<std::int64_t> retried;
  for (std::int64_t t; (t = control_->claim_next_tile(1)) >= 0;) {
    retried.push_back(t);
    control_->complete_tile(1, t);
  }
  control_->leave_job(0);
  std::sort(retried.begin(), retried.end());
  EXPECT_EQ(retried, held);
  EXPECT_TRUE(control_->job_complete());
  EXPECT_EQ(control_->tiles_requeued_total(), 3);
}

// Chunks: a worker takes several tiles from the cursor at once (reserved for it), so the shared
// cursor and done counter are touched once per chunk. A worker that dies gives back the tiles
// it had reserved but not started (they are not retries), its finished tiles still count, and
// the job completes with every tile run once.
class ChunkedControlBlockTest : public ::testing::Test {
 protected:
  static constexpr std::int64_t kTiles = 1000;
  static constexpr int kWorkers = 2;
  void SetUp() override {
    bytes_ = ControlBlock::bytes_for(kTiles, kWorkers);
    memory_.resize(bytes_ + 64);
    void* aligned = memory_.data() + (64 - reinterpret_cast<std::uintptr_t>(memory_.data()) % 64) % 64;
    control_ = ControlBlock::create_in(aligned, bytes_, kTiles, kWorkers);
    JobDescriptor d;
    d.job_id = 1;
    d.tile_count = kTiles;
    control_->post_job(d);
    ASSERT_TRUE(control_->enter_job(0));
  }
  void TearDown() override { control_->leave_job(0); }
  std::size_t bytes_ = 0;
  std::vector<std::byte> memory_;
  ControlBlock* control_ = nullptr;
};

TEST_F(ChunkedControlBlockTest, AClaimReservesAChunkAndTheDoneCountIsReportedPerChunk) {
  const std::int64_t first = control_->claim_next_tile(0);
  EXPECT_EQ(first, 0);
  // The rest of the chunk is reserved for slot 0: slot 1's first tile comes after it.
  const std::int64_t other = control_->claim_next_tile(1);
  EXPECT_GT(other, 1);
  EXPECT_LE(other, kMaxChunk);
  EXPECT_EQ(control_->tile_state(1).load(), tile_reserved_by(0));
  control_->complete_tile(0, first);
  EXPECT_EQ(control_->tiles_done(), 0) << "reported per chunk, not per tile";
  control_->report_done(0);
  EXPECT_EQ(control_->tiles_done(), 1);
}

// The job's dispatch policy sizes the chunks: one tile per claim leaves the next tile to the
// other worker; a larger chunk reserves that many.
TEST(ControlBlockDispatchTest, TheJobsDispatchPolicySizesEachClaim) {
  constexpr std::int64_t kTiles = 1000;
  for (const std::int32_t max_chunk : {1, 7}) {
    SCOPED_TRACE(max_chunk);
    const std::size_t bytes = ControlBlock::bytes_for(kTiles, 2);
    std::vector<std::byte> memory(bytes + 64);
    void* aligned = memory.data() + (64 - reinterpret_cast<std::uintptr_t>(memory.data()) % 64) % 64;
    ControlBlock* control = ControlBlock::create_in(aligned, bytes, kTiles, 2);
    JobDescriptor d;
    d.job_id = 1;
    d.tile_count = kTiles;
    d.dispatch.max_chunk = max_chunk;
    control->post_job(d);
    ASSERT_TRUE(control->enter_job(0));
    ASSERT_TRUE(control->enter_job(1));
    EXPECT_EQ(control->claim_next_tile(0), 0);
    EXPECT_EQ(control->claim_next_tile(1), max_chunk);  // slot 0 holds [0, max_chunk)
    control->leave_job(0);
    control->leave_job(1);
  }
}

TEST_F(ChunkedControlBlockTest, ADeadWorkersReservedTilesComeBackWithoutCountingAsRetries) {
  // Slot 0 finishes one tile, starts a second and dies holding it and the rest of its chunk.
  const std::int64_t a = control_->claim_next_tile(0);
  control_->complete_tile(0, a);
  const std::int64_t b = control_->claim_next_tile(0);
  ASSERT_GE(b, 0);
  EXPECT_EQ(control_->requeue_tiles_of(0), 1) << "only the tile it had started is a retry";
  EXPECT_EQ(control_->tiles_requeued_total(), 1);
  EXPECT_EQ(control_->tiles_done(), 1) << "the tile it finished counts";
  std::vector<int> runs(kTiles, 0);
  runs[static_cast<std::size_t>(a)] = 1;
  for (std::int64_t t; (t = control_->claim_next_tile(1)) >= 0;) {
    ++runs[static_cast<std::size_t>(t)];
    control_->complete_tile(1, t);
  }
  EXPECT_TRUE(control_->job_complete());
  EXPECT_EQ(control_->tiles_done(), kTiles);
  EXPECT_EQ(std::count(runs.begin(), runs.end(), 1), kTiles) << "every tile ran exactly once";
}

TEST_F(ChunkedControlBlockTest, TilesCompletedAfterTheLastClaimAreReportedAtOnce) {
  // Copy mode keeps several tiles in flight and completes them after its claims ran out.
  std::vector<std::int64_t> in_flight;
  for (std::int64_t t; (t = control_->claim_next_tile(0)) >= 0;) in_flight.push_back(t);
  ASSERT_EQ(static_cast<std::int64_t>(in_flight.size()), kTiles);
  for (const std::int64_t t : in_flight) control_->complete_tile(0, t);
  EXPECT_TRUE(control_->job_complete());
}

TEST_F(ControlBlockTest, RequeueLeavesDoneTilesAndOtherWorkersTilesAlone) {
  control_->post_job(job(4));
  ASSERT_TRUE(control_->enter_job(0));
  const auto a = control_->claim_next_tile(0);
  control_->complete_tile(0, a);
  const auto b = control_->claim_next_tile(1);
  EXPECT_EQ(control_->requeue_tiles_of(0), 0);
  EXPECT_EQ(control_->tile_state(a).load(), kTileDone);
  EXPECT_EQ(control_->tile_state(b).load(), tile_claimed_by(1));
  control_->leave_job(0);
}

TEST_F(ControlBlockTest, FirstErrorWinsAndStopsFurtherClaims) {
  control_->post_job(job(100));
  ASSERT_TRUE(control_->enter_job(0));
  ASSERT_GE(control_->claim_next_tile(0), 0);
  control_->report_error("first");
  control_->report_error("second");
  EXPECT_TRUE(control_->job_failed());
  EXPECT_EQ(control_->error_message(), "first");
  EXPECT_EQ(control_->claim_next_tile(1), -1);
  control_->leave_job(0);
}

TEST_F(ControlBlockTest, PostJobResetsTheStateOfThePreviousJob) {
  control_->post_job(job(3, 1));
  ASSERT_TRUE(control_->enter_job(0));
  control_->report_error("boom");
  control_->leave_job(0);
  control_->post_job(job(3, 2));
  EXPECT_FALSE(control_->job_failed());
  EXPECT_EQ(control_->tiles_done(), 0);
  EXPECT_EQ(control_->job().job_id, 2u);
  ASSERT_TRUE(control_->enter_job(0));
  int claimed = 0;
  for (std::int64_t t; (t = control_->claim_next_tile(0)) >= 0; ++claimed) control_->complete_tile(0, t);
  control_->leave_job(0);
  EXPECT_EQ(claimed, 3);
}

TEST_F(ControlBlockTest, PostJobWaitsUntilNoWorkerIsInsideThePreviousJob) {
  control_->post_job(job(1, 1));
  ASSERT_TRUE(control_->enter_job(0));
  std::atomic<bool> posted{false};
  std::thread runner([&] {
    control_->post_job(job(1, 2));
    posted = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(posted.load()) << "a job was posted while a worker still read the old one";
  EXPECT_EQ(control_->job().job_id, 1u);
  control_->leave_job(0);
  runner.join();
  EXPECT_TRUE(posted.load());
  EXPECT_EQ(control_->job().job_id, 2u);
}

TEST_F(ControlBlockTest, IdleWorkersSleepUntilTheEpochMovesAndWakeOnStop) {
  const std::uint32_t seen = control_->epoch();
  std::atomic<bool> woke{false};
  std::thread worker([&] {
    while (!control_->stop_requested()) control_->wait_for_epoch_change(seen, std::chrono::seconds(10));
    woke = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(woke.load());
  const auto t0 = std::chrono::steady_clock::now();
  control_->request_stop();
  worker.join();
  EXPECT_TRUE(woke.load());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));  // a wake, not the 10 s timeout
}

// Threads asleep on the epoch, as idle workers are, until a post or a requeue wakes them.
class SleepingWorkers {
 public:
  SleepingWorkers(ControlBlock& control, int count) : control_(control), tids_(static_cast<std::size_t>(count)) {
    const std::uint32_t seen = control.epoch();
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, i, seen] {
        tids_[static_cast<std::size_t>(i)] = ::gettid();
        std::uint32_t last = seen;
        while (!control_.stop_requested()) {
          control_.wait_for_epoch_change(last, std::chrono::seconds(30));
          if (control_.stop_requested()) break;
          if (control_.epoch() != last) ++woken_;  // a wake for new work, not the timeout
          last = control_.epoch();
        }
      });
    }
  }
  ~SleepingWorkers() {
    control_.request_stop();
    for (auto& t : threads_) t.join();
  }
  /// True once every thread sleeps (state S: in the futex), within 5 s.
  bool all_asleep() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      const bool asleep = std::all_of(tids_.begin(), tids_.end(), [](const std::atomic<pid_t>& tid) {
        std::ifstream f("/proc/self/task/" + std::to_string(tid.load()) + "/stat");
        std::string line;
        return tid.load() != 0 && std::getline(f, line) && line.size() > line.rfind(')') + 2 && line[line.rfind(')') + 2] == 'S';
      });
      if (asleep) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  /// Wakes counted so far, after a moment for the woken ones to run.
  int woken_after_a_moment() const {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return woken_.load();
  }

 private:
  ControlBlock& control_;
  std::vector<std::atomic<pid_t>> tids_;
  std::vector<std::thread> threads_;
  std::atomic<int> woken_{0};
};

// 4,096 share workers on 2 cores, all woken for a 16-tile job, ran the demo for over 13 minutes.
TEST_F(ControlBlockTest, PostedJobWakesOnlyAsManyIdleWorkersAsItHasTiles) {
  SleepingWorkers sleepers(*control_, 32);
  ASSERT_TRUE(sleepers.all_asleep());
  control_->post_job(job(3));
  EXPECT_EQ(sleepers.woken_after_a_moment(), 3);
}

TEST_F(ControlBlockTest, PostedJobWithMoreTilesThanWorkersWakesThemAll) {
  SleepingWorkers sleepers(*control_, 8);
  ASSERT_TRUE(sleepers.all_asleep());
  control_->post_job(job(1000));
  EXPECT_EQ(sleepers.woken_after_a_moment(), 8);
}

TEST_F(ControlBlockTest, RequeueWakesOnlyAsManyIdleWorkersAsTilesWentBack) {
  control_->post_job(job(8));
  for (int i = 0; i < 2; ++i) ASSERT_EQ(control_->claim_next_tile(/*slot=*/40), i);  // a worker that will die with 2 tiles
  SleepingWorkers sleepers(*control_, 16);
  ASSERT_TRUE(sleepers.all_asleep());
  EXPECT_EQ(control_->requeue_tiles_of(40), 2);
  EXPECT_EQ(sleepers.woken_after_a_moment(), 2);
}

TEST_F(ControlBlockTest, ManyJobsWithConcurrentWorkersNeverLoseOrRepeatATile) {
  constexpr int kWorkers = 3;
  constexpr int kJobs = 200;
  std::atomic<std::int64_t> total{0};
  std::vector<std::thread> threads;
  for (int slot = 0; slot < kWorkers; ++slot) {
    threads.emplace_back([&, slot] {
      std::uint32_t seen = 0;
      while (!control_->stop_requested()) {
        const std::uint32_t e = control_->epoch();
        if (e == seen) {
          control_->wait_for_epoch_change(e, std::chrono::milliseconds(50));
          continue;
        }
        if (!control_->enter_job(slot)) continue;
        seen = e;
        for (std::int64_t t; (t = control_->claim_next_tile(slot)) >= 0;) {
          total.fetch_add(1);
          control_->complete_tile(slot, t);
        }
        control_->leave_job(slot);
      }
    });
  }
  for (int j = 1; j <= kJobs; ++j) {
    control_->post_job(job(1 + j % 37, static_cast<std::uint64_t>(j)));
    while (!control_->job_complete()) control_->wait_for_progress(std::chrono::milliseconds(50));
  }
  control_->request_stop();
  for (auto& t : threads) t.join();
  std::int64_t expected = 0;
  for (int j = 1; j <= kJobs; ++j) expected += 1 + j % 37;
  EXPECT_EQ(total.load(), expected);
}

// ---- JobDescriptor ----------------------------------------------------------------------------

TEST(JobDescriptorTest, AccessorsReturnTheTextsThatSetTextStored) {
  JobDescriptor d;
  JobDescriptor::set_text(d.kernel, sizeof d.kernel, "add", "kernel name");
  d.input_count = 2;
  JobDescriptor::set_text(d.inputs[0], kNameCapacity, "tilepool-1-in0", "input segment name");
  JobDescriptor::set_text(d.inputs[1], kNameCapacity, "b", "input segment name");
  JobDescriptor::set_text(d.output, kNameCapacity, "out", "output segment name");
  JobDescriptor::set_text(d.output_backing, kBackingCapacity, "file:/tmp/x", "backing");
  JobDescriptor::set_text(d.params, kParamsCapacity, "value=5\n", "parameters");

  EXPECT_EQ(d.kernel_name(), "add");
  EXPECT_EQ(d.input_name(0), "tilepool-1-in0");
  EXPECT_EQ(d.input_name(1), "b");
  EXPECT_EQ(d.output_name(), "out");
  EXPECT_EQ(d.output_backing_spec(), "file:/tmp/x");
  EXPECT_EQ(d.params_text(), "value=5\n");
}

TEST(JobDescriptorTest, UnsetFieldsAndInputsPastTheCountAreEmpty) {
  JobDescriptor d;
  d.input_count = 1;
  JobDescriptor::set_text(d.inputs[0], kNameCapacity, "a", "input segment name");

  EXPECT_EQ(d.kernel_name(), "");
  EXPECT_EQ(d.input_name(kMaxInputs - 1), "");
  EXPECT_EQ(d.output_name(), "");
  EXPECT_EQ(d.output_backing_spec(), "");
  EXPECT_EQ(d.params_text(), "");
}

TEST(JobDescriptorTest, AccessorsStopAtTheFieldsEndWhenItHasNoNul) {
  // What another process may have written: every byte of each field set, no terminator.
  JobDescriptor d;
  std::memset(d.kernel, 'k', sizeof d.kernel);
  std::memset(d.inputs, 'i', sizeof d.inputs);
  std::memset(d.output, 'o', sizeof d.output);
  std::memset(d.output_backing, 'b', sizeof d.output_backing);
  std::memset(d.params, 'p', sizeof d.params);

  EXPECT_EQ(d.kernel_name(), std::string(sizeof d.kernel, 'k'));
  EXPECT_EQ(d.input_name(0), std::string(kNameCapacity, 'i'));
  EXPECT_EQ(d.input_name(kMaxInputs - 1), std::string(kNameCapacity, 'i'));
  EXPECT_EQ(d.output_name(), std::string(kNameCapacity, 'o'));
  EXPECT_EQ(d.output_backing_spec(), std::string(kBackingCapacity, 'b'));
  EXPECT_EQ(d.params_text(), std::string(kParamsCapacity, 'p'));
}

TEST(JobDescriptorTest, SetTextRefusesTextThatLeavesNoRoomForItsNul) {
  JobDescriptor d;

  EXPECT_THROW(JobDescriptor::set_text(d.kernel, sizeof d.kernel, std::string(sizeof d.kernel, 'k'), "kernel name"), Error);
  EXPECT_NO_THROW(JobDescriptor::set_text(d.kernel, sizeof d.kernel, std::string(sizeof d.kernel - 1, 'k'), "kernel name"));
  EXPECT_EQ(d.kernel_name().size(), sizeof d.kernel - 1);
}

TEST(ArrayDescriptionTest, GivesBackTheDtypeAndShapeItDescribes) {
  const ArrayDescription d = ArrayDescription::of(DType::int16, Shape{365, 16, 0});

  EXPECT_EQ(d.dtype(), DType::int16);
  EXPECT_EQ(d.shape(), (Shape{365, 16, 0}));
  EXPECT_EQ(ArrayDescription::of(DType::float64, Shape{}).shape(), Shape{});
}

TEST(ArrayDescriptionTest, RefusesMoreAxesThanAnArrayMayHave) {
  EXPECT_THROW((void)ArrayDescription::of(DType::uint8, Shape(kMaxDims + 1, 1)), Error);
}

TEST(ArrayDescriptionTest, AccessorsRefuseWhatNoRunnerWrites) {
  // What another process may have written.
  ArrayDescription bad_dtype = ArrayDescription::of(DType::float32, Shape{4});
  bad_dtype.dtype_code = kDTypeCount;
  ArrayDescription bad_ndim = ArrayDescription::of(DType::float32, Shape{4});
  bad_ndim.ndim = kMaxDims + 1;
  ArrayDescription bad_extent = ArrayDescription::of(DType::float32, Shape{4, 4});
  bad_extent.extents[1] = -4;

  EXPECT_THROW((void)bad_dtype.dtype(), Error);
  EXPECT_THROW((void)bad_ndim.shape(), Error);
  EXPECT_THROW((void)bad_extent.shape(), Error);
}

}  // namespace
}  // namespace tilepool
