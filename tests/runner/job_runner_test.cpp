// The job runner (runner/src/job_runner.cpp) driven directly, on a fake launcher whose workers
// are threads running the real tile loop over a control block in plain memory. The test scripts
// what a worker does at each tile (die, hang, fail) and the launcher records what the runner
// asked of it, so each promise of a job's life — post, wait, supervise, collect, end — is seen
// without a worker process.
#include "detail/job_runner.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool {
namespace {

using namespace std::chrono_literals;

/// Thrown by a scripted worker to die where it stands. The fake's handler catches it before the
/// tile loop would (which reports anything thrown as the job's error) and parks the thread as a
/// killed process: mid-job, inside the job it entered, touching nothing again.
struct WorkerDeath {};

/// A launcher whose workers are threads in this process running serve_jobs with a
/// LocalJobHandler. `observer` is called at each TilePoint of each tile, on the worker's thread,
/// with its slot: the test's script. The runner's calls are logged in `calls`.
class ThreadWorkersLauncher final : public detail::Launcher {
 public:
  using Observer = std::function<void(ThreadWorkersLauncher&, int slot, TilePoint, std::int64_t tile)>;

  ThreadWorkersLauncher(int workers, bool supervised) : workers_(workers), supervised_(supervised) {
    const std::size_t bytes = ControlBlock::bytes_for(kCapacity, workers);
    memory_ = allocate_bytes(bytes, Sharing::private_to_process);
    control_ = ControlBlock::create_in(memory_.get(), bytes, kCapacity, workers);
    slots_.resize(static_cast<std::size_t>(workers));
    for (int slot = 0; slot < workers; ++slot) start(slot);
  }
  ~ThreadWorkersLauncher() override {
    control_->request_stop();
    {
      const std::lock_guard lock(mutex_);
      tearing_down_ = true;
    }
    release();
    for (Slot& s : slots_) {
      if (s.thread.joinable()) s.thread.join();
    }
    for (std::thread& t : dead_) t.join();
  }

  /// Sets the script; call before the job is run.
  void observe(Observer observer) { observer_ = std::move(observer); }
  /// Wakes workers waiting in wait_until_killed_or_released.
  void release() {
    const std::lock_guard lock(mutex_);
    released_ = true;
    changed_.notify_all();
  }
  /// A scripted worker's hang: returns when released, or dies when the runner kills it.
  void wait_until_killed_or_released(int slot) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return released_ || slots_[index(slot)].killed; });
    if (slots_[index(slot)].killed) throw WorkerDeath{};
  }
  [[nodiscard]] ControlBlock& control() noexcept { return *control_; }

  // --- the Launcher ------------------------------------------------------------------------
  Mode mode() const noexcept override { return Mode::threads; }
  int worker_count() const noexcept override { return workers_; }
  ControlBlock& control_for(std::int64_t tiles) override {
    calls.emplace_back("control_for");
    EXPECT_LE(tiles, kCapacity);
    return *control_;
  }
  void check(const JobRequest& /*job*/, const detail::PreparedJob& /*prepared*/) const override {
    calls.emplace_back("check");
    if (refuse) throw Error(Errc::usage, "this mode refuses the job");
  }
  void bind(const JobRequest& job, const detail::PreparedJob& /*prepared*/) override {
    calls.emplace_back("bind");
    arrays_.inputs.clear();
    for (const JobArray& in : job.inputs) arrays_.inputs.push_back(in.array);
    arrays_.output = job.output.array;
  }
  void start_job() override {
    calls.emplace_back("start_job");
    if (fail_start) throw Error(Errc::system, "could not start the job's workers");
  }
  void end_job(bool abandoned) noexcept override {
    calls.emplace_back(abandoned ? "end_job(abandoned)" : "end_job(completed)");
    if (!abandoned) return;
    // As a real launcher: no worker touches the job's arrays once this returns.
    control_->report_error("job stopped");
    release();
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return busy_ == 0; });
  }
  bool runner_supervises() const noexcept override { return supervised_; }
  std::optional<int> poll_exit(int slot) override {
    Slot& s = slots_[index(slot)];
    {
      const std::lock_guard lock(mutex_);
      if (!s.died) return std::nullopt;
      s.died = false;
    }
    dead_.push_back(std::move(s.thread));  // parked until teardown, as a dead process stays dead
    return W_EXITCODE(0, SIGKILL);
  }
  pid_t pid_of(int slot) const override { return slots_[index(slot)].pid; }
  void kill(int slot) noexcept override {
    kills.push_back(slot);
    const std::lock_guard lock(mutex_);
    slots_[index(slot)].killed = true;
    changed_.notify_all();
  }
  bool replace(int slot) override {
    replaced.push_back(slot);
    start(slot);
    return true;
  }
  std::uint64_t bytes_copied() const noexcept override { return bytes_copied_value; }

  mutable std::vector<std::string> calls;  // the runner's thread only
  std::vector<int> kills;
  std::vector<int> replaced;
  bool refuse = false;
  bool fail_start = false;
  std::uint64_t bytes_copied_value = 0;

 private:
  static constexpr std::int64_t kCapacity = 256;
  static std::size_t index(int slot) { return static_cast<std::size_t>(slot); }

  // Counts workers inside a job's tiles, so that end_job can wait for them.
  class CountingHandler final : public JobHandler {
   public:
    CountingHandler(ThreadWorkersLauncher& owner, int slot)
        : owner_(owner), local_([&owner](const JobDescriptor&) { return owner.arrays_; },
                                [&owner, slot](TilePoint point, std::int64_t tile) {
                                  if (owner.observer_) owner.observer_(owner, slot, point, tile);
                                }) {}
    void bind(const JobDescriptor& job) override { local_.bind(job); }
    void run(ControlBlock& control, int slot) override {
      bool died = false;
      {
        owner_.add_busy(+1);
        struct Leave {
          ThreadWorkersLauncher& o;
          ~Leave() { o.add_busy(-1); }
        } leave{owner_};
        try {
          local_.run(control, slot);
        } catch (const WorkerDeath&) {
          died = true;
        }
      }
      if (died) owner_.park_dead(slot);
    }

   private:
    ThreadWorkersLauncher& owner_;
    LocalJobHandler local_;
  };

  struct Slot {
    std::unique_ptr<CountingHandler> handler;
    std::thread thread;
    pid_t pid = 0;
    bool killed = false;
    bool died = false;
  };

  // A dead worker's thread: marked for poll_exit, then it waits for the launcher's teardown
  // without touching the control block (the supervisor lets its slot out of the job).
  void park_dead(int slot) {
    std::unique_lock lock(mutex_);
    slots_[index(slot)].died = true;
    changed_.wait(lock, [&] { return tearing_down_; });
  }

  void add_busy(int delta) {
    const std::lock_guard lock(mutex_);
    busy_ += delta;
    changed_.notify_all();
  }

  // A new "process" in `slot`: a fresh handler on a fresh thread, with a new pid.
  void start(int slot) {
    Slot& s = slots_[index(slot)];
    if (s.handler) dead_handlers_.push_back(std::move(s.handler));  // a parked thread is still inside it
    s.handler = std::make_unique<CountingHandler>(*this, slot);
    s.pid = next_pid_++;
    s.killed = false;
    s.thread = std::thread([this, slot, handler = s.handler.get()] { serve_jobs(*control_, slot, *handler); });
  }

  int workers_;
  bool supervised_;
  std::shared_ptr<std::byte> memory_;
  ControlBlock* control_ = nullptr;
  JobArrays arrays_;  // written only inside post_job's quiet window
  Observer observer_;
  std::vector<Slot> slots_;
  std::vector<std::thread> dead_;  // threads of dead workers, joined at teardown
  std::vector<std::unique_ptr<CountingHandler>> dead_handlers_;
  bool tearing_down_ = false;
  pid_t next_pid_ = 7000;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool released_ = false;
  int busy_ = 0;
};

/// Runs `job` on `runner`, cancelling it after `limit`: a broken runner fails its test instead
/// of hanging it. (A job with its own cancel flag keeps it, and has no deadline.)
JobStats run_within(detail::JobRunner& runner, JobRequest job, std::chrono::milliseconds limit = 10s) {
  std::atomic<bool> expired{false};
  if (job.cancel == nullptr) job.cancel = &expired;
  std::mutex mutex;
  std::condition_variable finished;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mutex);
    if (!finished.wait_for(lock, limit, [&] { return done; })) expired.store(true);
  });
  struct Stop {
    std::mutex& mutex;
    std::condition_variable& finished;
    bool& done;
    std::thread& watchdog;
    ~Stop() {
      {
        const std::lock_guard lock(mutex);
        done = true;
      }
      finished.notify_all();
      watchdog.join();
    }
  } stop{mutex, finished, done, watchdog};
  try {
    return runner.run(job);
  } catch (const Error&) {
    if (expired.load()) ADD_FAILURE() << "the job did not finish within " << limit.count() << " ms";
    throw;
  }
}

/// A job of `negate` over an 8x8 float64 array of 1..64 in 2x2 tiles (16 tiles).
class JobRunnerTest : public ::testing::Test {
 protected:
  static constexpr std::int64_t kTiles = 16;

  JobRunnerTest() {
    input_ = allocate_array(DType::float64, {8, 8}, Sharing::private_to_process);
    output_ = allocate_array(DType::float64, {8, 8}, Sharing::private_to_process);
    for (int i = 0; i < 64; ++i) in(i) = i + 1;
  }

  /// A runner on a ThreadWorkersLauncher of two workers.
  std::unique_ptr<detail::JobRunner> make_runner(PoolOptions options = {}, bool supervised = false) {
    options.workers = 2;
    options.sample_memory = options.sample_memory && sample_memory_;
    return std::make_unique<detail::JobRunner>(options, [supervised](detail::Supervisor&) {
      return std::make_unique<ThreadWorkersLauncher>(2, supervised);
    });
  }
  static ThreadWorkersLauncher& launcher_of(detail::JobRunner& runner) {
    return static_cast<ThreadWorkersLauncher&>(runner.launcher());
  }

  [[nodiscard]] JobRequest job() const {
    return JobRequest{"negate", {JobArray{input_, "", {}, std::nullopt}}, JobArray{output_, "", {}, std::nullopt}, {2, 2}, {}};
  }
  /// The input's sum into `total`, a 0-d float64 array, in 2x2 tiles.
  [[nodiscard]] JobRequest sum_job(const AnyArray& total) const {
    JobRequest sum = job();
    sum.kernel = "sum";
    sum.output = JobArray{total, "", {}, std::nullopt};
    return sum;
  }
  double& in(int i) { return reinterpret_cast<double*>(input_.data())[i]; }
  double& out(int i) { return reinterpret_cast<double*>(output_.data())[i]; }
  bool output_is_negated_input() {
    for (int i = 0; i < 64; ++i) {
      if (out(i) != -in(i)) return false;
    }
    return true;
  }

  bool sample_memory_ = false;  // reading smaps costs CPU the other tests do not need
  AnyArray input_;
  AnyArray output_;
};

TEST_F(JobRunnerTest, RunReturnsOnceEveryTileOfThePostedJobIsDone) {
  auto runner = make_runner();

  const JobStats stats = run_within(*runner, job());

  EXPECT_EQ(stats.tiles, kTiles);
  EXPECT_TRUE(output_is_negated_input());
}

TEST_F(JobRunnerTest, LauncherIsAskedToCheckPlaceStartAndEndTheJobInThatOrder) {
  auto runner = make_runner();

  run_within(*runner, job());

  EXPECT_EQ(launcher_of(*runner).calls,
            (std::vector<std::string>{"check", "control_for", "bind", "start_job", "end_job(completed)"}));
}

TEST_F(JobRunnerTest, RangedJobWritesOnlyTheOutputOfItsTiles) {
  auto runner = make_runner();
  for (int i = 0; i < 64; ++i) out(i) = 7;
  JobRequest ranged = job();
  ranged.tiles = TileRange{.first = 4, .count = 4};  // grid tiles 4..7: rows 2..3

  const JobStats stats = run_within(*runner, ranged);

  EXPECT_EQ(stats.tiles, 4);
  for (int i = 0; i < 64; ++i) {
    const bool in_range = i / 8 >= 2 && i / 8 < 4;
    EXPECT_EQ(out(i), in_range ? -in(i) : 7) << "element " << i;
  }
}

TEST_F(JobRunnerTest, ReductionPartialsComeBackInTileOrderAndTheirTotalFillsTheOutput) {
  auto runner = make_runner();
  AnyArray total = allocate_array(DType::float64, {}, Sharing::private_to_process);
  JobRequest sum = sum_job(total);
  sum.tile = {4, 4};  // tile t covers rows 4*(t/2).., columns 4*(t%2)..

  const JobStats stats = run_within(*runner, sum);

  ASSERT_EQ(stats.partials.size(), 4u);
  for (int t = 0; t < 4; ++t) {
    double expected = 0;
    for (int r = 4 * (t / 2); r < 4 * (t / 2) + 4; ++r) {
      for (int c = 4 * (t % 2); c < 4 * (t % 2) + 4; ++c) expected += in(r * 8 + c);
    }
    EXPECT_EQ(stats.partials[static_cast<std::size_t>(t)].f64, expected) << "tile " << t;
  }
  EXPECT_EQ(*reinterpret_cast<const double*>(total.data()), 64.0 * 65.0 / 2.0);
}

TEST_F(JobRunnerTest, PostedDescriptorDescribesEachArraysDtypeAndShape) {
  auto runner = make_runner();
  AnyArray total = allocate_array(DType::float64, {}, Sharing::private_to_process);

  run_within(*runner, sum_job(total));

  // What a copy-mode worker builds its plan from: the arrays' specs, not only their names.
  const JobDescriptor& posted = launcher_of(*runner).control().job();
  ASSERT_EQ(posted.input_count, 1u);
  EXPECT_EQ(posted.input_arrays[0].dtype(), DType::float64);
  EXPECT_EQ(posted.input_arrays[0].shape(), (Shape{8, 8}));
  EXPECT_EQ(posted.output_array.dtype(), DType::float64);
  EXPECT_EQ(posted.output_array.shape(), Shape{});
  EXPECT_EQ(posted.shape_vector(), (Shape{8, 8}));
}

TEST_F(JobRunnerTest, StatsCarryTheBytesTheLauncherCopied) {
  auto runner = make_runner();
  launcher_of(*runner).bytes_copied_value = 4242;

  const JobStats stats = run_within(*runner, job());

  EXPECT_EQ(stats.bytes_copied, 4242u);
}

TEST_F(JobRunnerTest, MemoryIsSampledOnlyWhenTheOptionsAskForIt) {
  sample_memory_ = true;
  auto sampling = make_runner(PoolOptions{.sample_memory = true});
  auto quiet = make_runner(PoolOptions{.sample_memory = false});

  const JobStats sampled = run_within(*sampling, job());
  const JobStats unsampled = run_within(*quiet, job());

  EXPECT_GT(sampled.peak_pss_bytes, 0u);  // this process's own PSS, at least
  EXPECT_EQ(unsampled.peak_pss_bytes, 0u);
}

TEST_F(JobRunnerTest, ProgressIsReportedAgainstTheJobsTileCount) {
  auto runner = make_runner();
  ThreadWorkersLauncher& launcher = launcher_of(*runner);
  // Workers hold their first tiles until progress has been reported once, so the runner's
  // wait loop surely runs while the job does.
  launcher.observe([](ThreadWorkersLauncher& l, int slot, TilePoint point, std::int64_t) {
    if (point == TilePoint::claimed) l.wait_until_killed_or_released(slot);
  });
  std::vector<std::pair<std::int64_t, std::int64_t>> reports;
  JobRequest j = job();
  j.progress = [&](std::int64_t done, std::int64_t total) {
    reports.emplace_back(done, total);
    launcher.release();
  };

  run_within(*runner, j);

  ASSERT_FALSE(reports.empty());
  for (const auto& [done, total] : reports) {
    EXPECT_EQ(total, kTiles);
    EXPECT_LE(done, kTiles);
  }
  EXPECT_TRUE(std::is_sorted(reports.begin(), reports.end()));
}

TEST_F(JobRunnerTest, FailingTileFailsTheRunWithTheWorkersMessageAndEndsTheJobAbandoned) {
  auto runner = make_runner();
  launcher_of(*runner).observe([](ThreadWorkersLauncher&, int, TilePoint point, std::int64_t tile) {
    if (point == TilePoint::claimed && tile == 5) throw std::runtime_error("scratch disk on fire at tile 5");
  });

  try {
    run_within(*runner, job());
    FAIL() << "expected the job to fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::job_failed);
    EXPECT_NE(std::string(e.what()).find("scratch disk on fire at tile 5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(launcher_of(*runner).calls.back(), "end_job(abandoned)");
}

TEST_F(JobRunnerTest, CancelStopsTheRunAsInterruptedAndEndsTheJobAbandoned) {
  auto runner = make_runner();
  launcher_of(*runner).observe([](ThreadWorkersLauncher& l, int slot, TilePoint point, std::int64_t) {
    if (point == TilePoint::claimed) l.wait_until_killed_or_released(slot);  // never finishes on its own
  });
  std::atomic<bool> cancel{false};
  JobRequest j = job();
  j.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(30ms);
    cancel.store(true);
  });

  try {
    run_within(*runner, j);
    ADD_FAILURE() << "expected the job to be cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::interrupted) << e.what();
  }
  canceller.join();
  EXPECT_EQ(launcher_of(*runner).calls.back(), "end_job(abandoned)");
}

TEST_F(JobRunnerTest, JobTheLauncherRefusesIsNeitherBoundNorStarted) {
  auto runner = make_runner();
  launcher_of(*runner).refuse = true;

  try {
    run_within(*runner, job());
    FAIL() << "expected the launcher's refusal";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::usage);
  }
  EXPECT_EQ(launcher_of(*runner).calls, std::vector<std::string>{"check"});
}

TEST_F(JobRunnerTest, JobWhoseStartFailsIsEndedAbandoned) {
  auto runner = make_runner();
  launcher_of(*runner).fail_start = true;

  EXPECT_THROW(run_within(*runner, job()), Error);

  EXPECT_EQ(launcher_of(*runner).calls.back(), "end_job(abandoned)");
}

TEST_F(JobRunnerTest, DeadWorkersTileIsRetriedOnAReplacementAndTheJobCompletes) {
  auto runner = make_runner({}, /*supervised=*/true);
  ThreadWorkersLauncher& launcher = launcher_of(*runner);
  std::atomic<bool> died{false};
  launcher.observe([&](ThreadWorkersLauncher&, int, TilePoint point, std::int64_t tile) {
    if (point == TilePoint::claimed && tile == 6 && !died.exchange(true)) throw WorkerDeath{};
  });

  const JobStats stats = run_within(*runner, job());

  EXPECT_TRUE(died.load());
  EXPECT_EQ(launcher.replaced.size(), 1u);
  EXPECT_EQ(stats.retries, 1);
  EXPECT_TRUE(output_is_negated_input());
}

TEST_F(JobRunnerTest, HungWorkerIsKilledAfterTheTileTimeoutAndItsTileRetried) {
  auto runner = make_runner(PoolOptions{.tile_timeout = 50ms}, /*supervised=*/true);
  ThreadWorkersLauncher& launcher = launcher_of(*runner);
  std::atomic<int> hung_slot{-1};
  launcher.observe([&](ThreadWorkersLauncher& l, int slot, TilePoint point, std::int64_t tile) {
    int none = -1;
    if (point == TilePoint::claimed && tile == 3 && hung_slot.compare_exchange_strong(none, slot)) {
      l.wait_until_killed_or_released(slot);
    }
  });

  const JobStats stats = run_within(*runner, job());

  ASSERT_GE(hung_slot.load(), 0);
  EXPECT_EQ(launcher.kills, std::vector<int>{hung_slot.load()});
  EXPECT_EQ(stats.retries, 1);
  EXPECT_TRUE(output_is_negated_input());
}

TEST_F(JobRunnerTest, TileThatKeepsKillingItsWorkerFailsTheRunNamingTheTile) {
  auto runner = make_runner(PoolOptions{.max_tile_retries = 1}, /*supervised=*/true);
  launcher_of(*runner).observe([](ThreadWorkersLauncher&, int, TilePoint point, std::int64_t tile) {
    if (point == TilePoint::claimed && tile == 5) throw WorkerDeath{};
  });

  try {
    run_within(*runner, job());
    FAIL() << "expected the job to fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::job_failed);
    EXPECT_NE(std::string(e.what()).find("negate: tile 5 [2:4, 2:4] killed its worker 2 times"), std::string::npos) << e.what();
  }
  EXPECT_EQ(launcher_of(*runner).calls.back(), "end_job(abandoned)");
}

// A worker process killed mid-tile never leaves the job it entered (ControlBlock::enter_job /
// leave_job count the workers inside), and post_job waits for that count to reach zero before it
// writes the next job: the pool's next job waited forever. The supervisor's requeue_tiles_of now
// lets a dead worker out of the job (WorkerSlot::inside).
TEST_F(JobRunnerTest, NextJobRunsAfterAWorkerDiedInsideThePreviousOne) {
  auto runner = make_runner({}, /*supervised=*/true);
  ThreadWorkersLauncher& launcher = launcher_of(*runner);
  std::atomic<bool> died{false};
  std::atomic<int> died_slot{-1};
  launcher.observe([&](ThreadWorkersLauncher&, int slot, TilePoint point, std::int64_t tile) {
    if (point == TilePoint::claimed && tile == 6 && !died.exchange(true)) {
      died_slot = slot;
      throw WorkerDeath{};
    }
  });
  run_within(*runner, job());
  ASSERT_TRUE(died.load());
  for (int i = 0; i < 64; ++i) out(i) = 0;

  auto next = std::async(std::launch::async, [&] { return run_within(*runner, job()); });
  const bool finished = next.wait_for(3s) == std::future_status::ready;

  EXPECT_TRUE(finished) << "the next job never started: post_job still waits for the dead worker to leave the last job";
  if (!finished) launcher.control().leave_job(died_slot);  // what the dead worker never did: lets the test end
  next.get();
  EXPECT_TRUE(output_is_negated_input());
}

}  // namespace
}  // namespace tilepool
