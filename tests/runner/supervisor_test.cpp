// The supervisor (runner/src/supervisor.cpp) driven directly, with a scripted launcher over a
// control block in plain memory: its "workers" are slots that the test makes claim tiles and
// die with a chosen wait status, so every death, timeout and retry limit is exact and no
// process is started.
#include "detail/supervisor.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tilepool/shared/allocation.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

constexpr int kKilled = W_EXITCODE(0, SIGKILL);
constexpr int kSegfault = W_EXITCODE(0, SIGSEGV);

/// A launcher whose workers are the test's script: die(slot, status) makes the next poll_exit
/// report that wait status; kill() makes it report SIGKILL; replace() gives the slot a new pid
/// (or, for a mode that does not replace workers, leaves it dead).
class ScriptedLauncher final : public detail::Launcher {
 public:
  ScriptedLauncher(int workers, bool replaces, Mode mode = Mode::share)
      : workers_(workers), replaces_(replaces), mode_(mode), exits_(static_cast<std::size_t>(workers)),
        alive_(static_cast<std::size_t>(workers), true) {
    for (int slot = 0; slot < workers; ++slot) pids_.push_back(next_pid_++);
  }

  Mode mode() const noexcept override { return mode_; }
  int worker_count() const noexcept override { return workers_; }
  ControlBlock& control_for(std::int64_t /*tiles*/) override { std::abort(); }  // the supervisor never asks
  bool runner_supervises() const noexcept override { return true; }
  std::optional<int> poll_exit(int slot) override { return std::exchange(exits_[index(slot)], std::nullopt); }
  pid_t pid_of(int slot) const override { return pids_[index(slot)]; }
  void kill(int slot) noexcept override {
    kills.push_back(slot);
    die(slot, kKilled);
  }
  bool replace(int slot) override {
    if (!replaces_) return false;
    replaced.push_back(slot);
    pids_[index(slot)] = next_pid_++;
    alive_[index(slot)] = true;
    return true;
  }
  int live_workers() const override { return static_cast<int>(std::count(alive_.begin(), alive_.end(), true)); }

  /// The worker in `slot` exits with `status` (a waitpid status); the next poll_exit says so.
  void die(int slot, int status) {
    exits_[index(slot)] = status;
    alive_[index(slot)] = false;
  }

  std::vector<int> kills;
  std::vector<int> replaced;

 private:
  static std::size_t index(int slot) { return static_cast<std::size_t>(slot); }

  int workers_;
  bool replaces_;
  Mode mode_;
  pid_t next_pid_ = 4200;
  std::vector<pid_t> pids_;
  std::vector<std::optional<int>> exits_;
  std::vector<bool> alive_;
};

/// A control block in plain memory and a job of `negate` over an 8x8 grid of 4x4 tiles
/// (tile 0 [0:4, 0:4], 1 [0:4, 4:8], 2 [4:8, 0:4], 3 [4:8, 4:8]).
class SupervisorTest : public ::testing::Test {
 protected:
  static constexpr int kWorkers = 2;

  SupervisorTest() {
    const std::size_t bytes = ControlBlock::bytes_for(16, kWorkers);
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, 16, kWorkers);
  }

  /// Posts the job's tiles [first, first + count) and starts `supervisor` watching it.
  void begin(detail::Supervisor& supervisor, std::int64_t first = 0, std::int64_t count = 4, bool stamp_claims = false) {
    prepared_.kernel = &find_kernel("negate");
    prepared_.output = ArraySpec{DType::float64, {8, 8}};
    prepared_.grid = TileGrid::make({8, 8}, Shape{4, 4});
    prepared_.first_tile = first;
    prepared_.tile_count = count;
    JobDescriptor desc;
    desc.job_id = ++job_id_;
    desc.tile_count = count;
    desc.first_tile = first;
    desc.stamp_claims = stamp_claims ? 1 : 0;
    control_->post_job(desc);
    supervisor.begin(*control_, prepared_);
  }

  /// Claims tiles for `slot` until it holds claim index `tile` (tiles claimed on the way stay
  /// claimed by it); fails the test if that tile never comes.
  void hold(int slot, std::int64_t tile) {
    for (int i = 0; i < 16; ++i) {
      const std::int64_t t = control_->claim_next_tile(slot);
      if (t == tile) return;
      ASSERT_GE(t, 0) << "tile " << tile << " was never handed to slot " << slot;
    }
    FAIL() << "tile " << tile << " was never handed to slot " << slot;
  }

  ControlBlock& control() { return *control_; }

 private:
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  detail::PreparedJob prepared_;
  std::uint64_t job_id_ = 0;
};

TEST_F(SupervisorTest, DeadWorkersClaimedTileGoesBackToTheQueue) {
  detail::Supervisor supervisor(3, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor);
  hold(0, 0);
  launcher.die(0, kKilled);

  supervisor.check(launcher);

  std::set<std::int64_t> claimed_by_other;
  for (std::int64_t t; (t = control().claim_next_tile(1)) >= 0;) claimed_by_other.insert(t);
  EXPECT_EQ(claimed_by_other, (std::set<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(control().tiles_requeued_total(), 1);  // one tile was started and is run again
  EXPECT_FALSE(control().job_failed());
}

TEST_F(SupervisorTest, DeadWorkerIsReplacedInItsSlot) {
  detail::Supervisor supervisor(3, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor);
  hold(1, 0);
  launcher.die(1, kKilled);

  supervisor.check(launcher);

  EXPECT_EQ(launcher.replaced, std::vector<int>{1});
}

TEST_F(SupervisorTest, TileThatKillsItsWorkerMoreThanMaxRetriesFailsTheJobNamingKernelTilePidAndSignal) {
  detail::Supervisor supervisor(/*max_tile_retries=*/2, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor);
  hold(1, 0);  // slot 1 keeps tile 0, so tile 1 is the one that comes back to slot 0
  pid_t last_pid = 0;

  for (int death = 0; death < 3; ++death) {
    hold(0, 1);
    last_pid = launcher.pid_of(0);
    launcher.die(0, kSegfault);
    supervisor.check(launcher);
  }

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("negate"), std::string::npos) << m;
  EXPECT_NE(m.find("tile 1 [0:4, 4:8]"), std::string::npos) << m;
  EXPECT_NE(m.find("3 times"), std::string::npos) << m;
  EXPECT_NE(m.find("pid " + std::to_string(last_pid)), std::string::npos) << m;
  EXPECT_NE(m.find("signal 11 (Segmentation fault)"), std::string::npos) << m;
}

TEST_F(SupervisorTest, TileMayKillItsWorkerMaxRetriesTimesWithoutFailingTheJob) {
  detail::Supervisor supervisor(/*max_tile_retries=*/2, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor);
  hold(1, 0);

  for (int death = 0; death < 2; ++death) {
    hold(0, 1);
    launcher.die(0, kSegfault);
    supervisor.check(launcher);
  }

  EXPECT_FALSE(control().job_failed()) << control().error_message();
  EXPECT_EQ(launcher.replaced, (std::vector<int>{0, 0}));
}

TEST_F(SupervisorTest, RetryCountsStartAgainWithEachJob) {
  detail::Supervisor supervisor(/*max_tile_retries=*/1, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  for (int job = 0; job < 2; ++job) {
    begin(supervisor);
    hold(0, 0);
    launcher.die(0, kKilled);
    supervisor.check(launcher);
  }

  EXPECT_FALSE(control().job_failed()) << control().error_message();
}

TEST_F(SupervisorTest, WorkersDyingBeforeTheyHoldATileFailTheJobPastTheRetryLimit) {
  detail::Supervisor supervisor(/*max_tile_retries=*/1, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor);

  launcher.die(0, W_EXITCODE(3, 0));
  supervisor.check(launcher);
  ASSERT_FALSE(control().job_failed()) << control().error_message();
  const pid_t last_pid = launcher.pid_of(1);
  launcher.die(1, W_EXITCODE(3, 0));
  supervisor.check(launcher);

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("negate: workers died 2 times before running a tile"), std::string::npos) << m;
  EXPECT_NE(m.find("pid " + std::to_string(last_pid) + ", exit status 3"), std::string::npos) << m;
}

TEST_F(SupervisorTest, WorkerHoldingATileLongerThanTheTileTimeoutIsKilled) {
  detail::Supervisor supervisor(3, /*tile_timeout=*/1ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor, 0, 4, /*stamp_claims=*/true);
  hold(1, 0);
  std::this_thread::sleep_for(10ms);

  supervisor.check(launcher);

  EXPECT_EQ(launcher.kills, std::vector<int>{1});
  EXPECT_EQ(launcher.replaced, std::vector<int>{1});  // its death is handled like any other
}

TEST_F(SupervisorTest, WorkerWithinTheTileTimeoutIsLeftAlone) {
  detail::Supervisor supervisor(3, /*tile_timeout=*/60s);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor, 0, 4, /*stamp_claims=*/true);
  hold(1, 0);

  supervisor.check(launcher);

  EXPECT_TRUE(launcher.kills.empty());
  EXPECT_TRUE(launcher.replaced.empty());
}

TEST_F(SupervisorTest, NoTileIsEverOverdueWithoutATileTimeout) {
  const detail::Supervisor supervisor(3, 0ms);

  EXPECT_FALSE(supervisor.overdue(0));  // held since the clock's epoch
}

TEST_F(SupervisorTest, WorkerKilledForTheTileTimeoutIsNamedSoInTheJobsError) {
  detail::Supervisor supervisor(/*max_tile_retries=*/0, /*tile_timeout=*/1ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor, 0, 4, /*stamp_claims=*/true);
  hold(0, 0);
  const pid_t pid = launcher.pid_of(0);
  std::this_thread::sleep_for(10ms);

  supervisor.check(launcher);

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("pid " + std::to_string(pid) + ", killed after the tile timeout of 1 ms"), std::string::npos) << m;
}

TEST_F(SupervisorTest, WhenEveryWorkerOfAModeThatCannotReplaceThemIsDeadTheJobFails) {
  detail::Supervisor supervisor(/*max_tile_retries=*/5, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/false, Mode::fork);
  begin(supervisor);
  hold(0, 0);
  launcher.die(0, kKilled);
  supervisor.check(launcher);
  ASSERT_FALSE(control().job_failed()) << "one worker is still alive: " << control().error_message();
  hold(1, 1);
  const pid_t pid = launcher.pid_of(1);
  launcher.die(1, kKilled);

  supervisor.check(launcher);

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("negate: every fork-mode worker died before the job was done"), std::string::npos) << m;
  EXPECT_NE(m.find("pid " + std::to_string(pid) + ", signal 9 (Killed)"), std::string::npos) << m;
  EXPECT_NE(m.find("while running tile 1 [0:4, 4:8]"), std::string::npos) << m;
}

// Tiles are named by their grid index everywhere (the tile loop's and copy mode's errors,
// --json, tilepool-mpi's ranges); a job over a range of the grid claims index 0 for its first
// grid tile.
TEST_F(SupervisorTest, RetryLimitMessageOfARangedJobNamesTheGridTile) {
  detail::Supervisor supervisor(/*max_tile_retries=*/0, 0ms);
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  begin(supervisor, /*first=*/3, /*count=*/1);
  hold(0, 0);  // claim index 0: grid tile 3
  launcher.die(0, kKilled);

  supervisor.check(launcher);

  ASSERT_TRUE(control().job_failed());
  const std::string m = control().error_message();
  EXPECT_NE(m.find("tile 3 [4:8, 4:8]"), std::string::npos) << m;
}

TEST_F(SupervisorTest, ReplaceIdleDeathsReplacesOnlyWorkersThatExited) {
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  launcher.die(1, kKilled);

  detail::Supervisor::replace_idle_deaths(launcher, control());

  EXPECT_EQ(launcher.replaced, std::vector<int>{1});
}

// A worker that died inside the last job after its last tile (a bound kernel's destructor
// that ends its process) never left the job: the next post_job waited for it for good (a
// Python pool hung, Ctrl-C unheard).
TEST_F(SupervisorTest, ReplaceIdleDeathsLetsAWorkerThatDiedInsideTheLastJobOut) {
  ScriptedLauncher launcher(kWorkers, /*replaces=*/true);
  ASSERT_TRUE(control().enter_job(1));
  launcher.die(1, kKilled);

  detail::Supervisor::replace_idle_deaths(launcher, control());

  EXPECT_TRUE(control().wait_until_idle(0ms));
}

// Copy mode's I/O threads report their workers' deaths at once.
TEST_F(SupervisorTest, DeathsReportedFromManyThreadsAreEachCounted) {
  constexpr int kThreads = 4;
  constexpr int kDeathsEach = 50;
  detail::Supervisor supervisor(/*max_tile_retries=*/kThreads * kDeathsEach, 0ms);
  begin(supervisor);
  std::vector<std::thread> threads;

  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int d = 0; d < kDeathsEach; ++d) supervisor.worker_died(0, /*tile=*/2, "pid 1, signal 9 (Killed)");
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_FALSE(control().job_failed()) << control().error_message();
  supervisor.worker_died(0, 2, "pid 1, signal 9 (Killed)");

  ASSERT_TRUE(control().job_failed());
  EXPECT_NE(control().error_message().find(std::to_string(kThreads * kDeathsEach + 1) + " times"), std::string::npos)
      << control().error_message();
}

TEST(DescribeWaitStatusTest, SaysTheSignalOrTheExitStatus) {
  EXPECT_EQ(detail::describe_wait_status(kKilled), "signal 9 (Killed)");
  EXPECT_EQ(detail::describe_wait_status(W_EXITCODE(2, 0)), "exit status 2");
}

}  // namespace
}  // namespace tilepool
