// The four modes compute the same thing: every built-in kernel gives bitwise the output that
// run_inline gives on the same data, in share, fork, copy and threads mode, with 1 and 3
// workers. Plus what is particular to each mode: what copy mode counts as copied, fork mode's
// shared-output rule, and surviving a killed worker.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <tuple>

#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::unique_name;

// An array in this process's private memory (what fork mode loads before forking).
AnyArray private_array(DType dtype, const Shape& shape) { return allocate_array(dtype, shape, Sharing::private_to_process); }

void fill_random(const AnyArray& a, unsigned seed) {
  std::mt19937 gen(seed);
  visit_dtype(a.dtype(), [&]<class T>(std::type_identity<T>) {
    auto* p = reinterpret_cast<T*>(a.data());
    for (std::int64_t i = 0; i < a.size(); ++i) {
      if constexpr (std::is_floating_point_v<T>) {
        p[i] = static_cast<T>(static_cast<int>(gen() % 2001) - 1000) / T(7);  // not exact in binary
      } else {
        p[i] = static_cast<T>(gen());
      }
    }
  });
}

bool same_bytes(const AnyArray& a, const AnyArray& b) {
  return a.bytes() == b.bytes() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

// Arrays laid out the way each mode wants them (the pool's placement), with random inputs.
class ModeArrays {
 public:
  explicit ModeArrays(Mode mode) : placement_(mode, Backing{}) {}

  JobArray input(DType dtype, const Shape& shape, unsigned seed) const {
    JobArray a = placement_.make(dtype, shape, ArrayRole::input);
    fill_random(a.array, seed);
    return a;
  }
  JobArray output(const ArraySpec& spec) const { return placement_.make(spec.dtype, spec.shape, ArrayRole::output); }

 private:
  ArrayPlacement placement_;
};

struct KernelCase {
  std::string kernel;
  DType dtype;
  std::vector<Shape> inputs;
  Shape tile;
  std::vector<std::string> params;
};

// Shapes with partial edge tiles, leading axes, halos at every border, and integer wrap-around.
std::vector<KernelCase> kernel_cases() {
  return {
      {"add", DType::float64, {{5, 29, 23}, {5, 29, 23}}, {8, 5}, {}},
      {"add", DType::int16, {{37, 41}, {37, 41}}, {16}, {}},
      {"negate", DType::float32, {{3, 31, 17}}, {4, 4}, {}},
      {"square", DType::int32, {{64, 33}}, {10, 10}, {}},
      {"add_scalar", DType::float64, {{365, 16, 16}}, {4, 4}, {"value=5.5"}},
      {"blur3x3", DType::float64, {{3, 33, 41}}, {8, 8}, {}},
      {"blur3x3", DType::uint8, {{19, 23}}, {5, 7}, {}},
      {"blur3x3", DType::float32, {{40, 40}}, {64, 64}, {}},  // one tile: no halo to ship
      {"matmul", DType::float64, {{45, 30}, {30, 37}}, {16, 8}, {}},
      {"matmul", DType::float32, {{64, 64}, {64, 64}}, {32, 32}, {}},
      {"sum", DType::float64, {{7, 50, 70}}, {16, 16}, {}},
      {"sum", DType::int32, {{50, 70}}, {9, 11}, {}},
  };
}

std::string case_name(const KernelCase& c) {
  std::string s = c.kernel;
  s += ' ';
  s += dtype_name(c.dtype);
  for (const Shape& in : c.inputs) {
    s += ' ';
    s += format_shape(in);
  }
  s += " tile ";
  s += format_shape(c.tile);
  return s;
}

class ModesTest : public ::testing::TestWithParam<std::tuple<Mode, int>> {};

// Every kernel on a pool of `options`, bitwise against the same job run inline.
void expect_every_kernel_matches_inline_reference(const PoolOptions& options) {
  const Mode mode = options.mode;
  Pool pool = Pool::start(options);
  unsigned seed = 1;
  for (const KernelCase& c : kernel_cases()) {
    SCOPED_TRACE(case_name(c));
    ModeArrays arrays(mode);
    JobRequest job{c.kernel, {}, {}, c.tile, Params::parse(c.params)};
    JobRequest ref = job;
    for (const Shape& shape : c.inputs) {
      job.inputs.push_back(arrays.input(c.dtype, shape, seed));
      ref.inputs.push_back(JobArray{private_array(c.dtype, shape), ""});
      std::memcpy(ref.inputs.back().array.data(), job.inputs.back().array.data(), job.inputs.back().array.bytes());
      ++seed;
    }
    const ArraySpec spec = output_spec(job);
    job.output = arrays.output(spec);
    ref.output = JobArray{private_array(spec.dtype, spec.shape), ""};
    run_inline(ref);

    const JobStats stats = pool.run(job);

    EXPECT_TRUE(same_bytes(job.output.array, ref.output.array));
    EXPECT_GT(stats.tiles, 0);
    EXPECT_EQ(stats.retries, 0);
    EXPECT_EQ(stats.bytes_copied > 0, mode == Mode::copy);
  }
}

TEST_P(ModesTest, EveryKernelMatchesInlineReferenceBitwise) {
  const auto [mode, workers] = GetParam();
  expect_every_kernel_matches_inline_reference(PoolOptions{.workers = workers, .mode = mode});
}

// The dispatch policy changes who runs which tile, never the result: one tile per claim and one
// tile (one byte) in flight per copy-mode worker give the same bytes.
TEST_P(ModesTest, EveryKernelMatchesUnderTheNarrowestDispatchPolicy) {
  const auto [mode, workers] = GetParam();
  const DispatchPolicy narrowest{.chunk_divisor = 1024, .max_chunk = 1, .copy_tiles_in_flight = 1, .copy_bytes_in_flight = 1};
  expect_every_kernel_matches_inline_reference(PoolOptions{.workers = workers, .mode = mode, .dispatch = narrowest});
}

INSTANTIATE_TEST_SUITE_P(Modes, ModesTest,
                         ::testing::Combine(::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                                            ::testing::Values(1, 3)),
                         [](const auto& param_info) {
                           return std::string(mode_name(std::get<0>(param_info.param))) + "_" +
                                  std::to_string(std::get<1>(param_info.param)) + "workers";
                         });

// --- copy mode: what crosses the pipes ---------------------------------------------------------

JobStats run_private(Mode mode, const std::string& kernel, const Shape& shape, const Shape& tile, int workers = 2) {
  ModeArrays arrays(mode);
  JobRequest job{kernel, {arrays.input(DType::float64, shape, 1)}, {}, tile, {}};
  if (kernel == "add") job.inputs.push_back(arrays.input(DType::float64, shape, 2));
  job.output = arrays.output(output_spec(job));
  Pool pool = Pool::start(PoolOptions{.workers = workers, .mode = mode});
  return pool.run(job);
}

TEST(CopyModeTest, AddCopiesBothInputsAndTheOutputOnce) {
  const Shape shape{365, 16, 16};
  const std::uint64_t array_bytes = 365 * 16 * 16 * 8;

  const JobStats stats = run_private(Mode::copy, "add", shape, {4, 4});

  EXPECT_EQ(stats.bytes_copied, 3 * array_bytes);
}

TEST(CopyModeTest, BlurCopiesEachTileWithItsHalo) {
  const Shape shape{2, 30, 21};
  const Shape tile{8, 8};
  // Each tile's rows and columns grown by one on each side, clamped to the array.
  std::uint64_t expected_in = 0;
  for (std::int64_t r = 0; r < 30; r += 8) {
    for (std::int64_t c = 0; c < 21; c += 8) {
      const std::int64_t rows = std::min<std::int64_t>(30, r + 8 + 1) - std::max<std::int64_t>(0, r - 1);
      const std::int64_t cols = std::min<std::int64_t>(21, c + 8 + 1) - std::max<std::int64_t>(0, c - 1);
      expected_in += static_cast<std::uint64_t>(2 * rows * cols * 8);
    }
  }
  const std::uint64_t output_bytes = 2 * 30 * 21 * 8;

  const JobStats stats = run_private(Mode::copy, "blur3x3", shape, tile);

  EXPECT_EQ(stats.bytes_copied, expected_in + output_bytes);
}

TEST(CopyModeTest, SumCopiesOnlyItsInput) {
  const JobStats stats = run_private(Mode::copy, "sum", {100, 30}, {16, 16});

  EXPECT_EQ(stats.bytes_copied, 100u * 30u * 8u);
}

TEST(CopyModeTest, SharingModesCopyNothing) {
  for (const Mode mode : {Mode::share, Mode::fork, Mode::threads}) {
    SCOPED_TRACE(std::string(mode_name(mode)));
    EXPECT_EQ(run_private(mode, "add", {365, 16, 16}, {4, 4}).bytes_copied, 0u);
    EXPECT_EQ(run_private(mode, "blur3x3", {2, 30, 21}, {8, 8}).bytes_copied, 0u);
  }
}

TEST(CopyModeTest, ManyJobsOfDifferentKernelsRunOnOnePool) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::copy});
  for (int i = 0; i < 10; ++i) {
    const std::string kernel = i % 2 == 0 ? "negate" : "blur3x3";
    ModeArrays arrays(Mode::copy);
    JobRequest job{kernel, {arrays.input(DType::float64, {40, 50}, static_cast<unsigned>(i))}, {}, {7, 9}, {}};
    job.output = arrays.output(output_spec(job));
    JobRequest ref = job;
    ref.output = JobArray{private_array(DType::float64, {40, 50}), ""};
    run_inline(ref);

    pool.run(job);

    EXPECT_TRUE(same_bytes(job.output.array, ref.output.array)) << "job " << i;
  }
}

// --- fork mode --------------------------------------------------------------------------------

TEST(ForkModeTest, PrivateOutputIsRefusedBeforeAnyFork) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::fork});
  JobRequest job{"negate", {JobArray{private_array(DType::float64, {8, 8}), ""}}, JobArray{private_array(DType::float64, {8, 8}), ""},
                 {4, 4}, {}};
  try {
    pool.run(job);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::usage);
    EXPECT_NE(std::string(e.what()).find("shared"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("ArrayPlacement"), std::string::npos) << e.what();
  }
}

TEST(ForkModeTest, SegmentOutputAndReductionToPrivateMemoryAreAccepted) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::fork});
  const AnyArray in = private_array(DType::float64, {16, 16});
  fill_random(in, 3);
  ArraySegment out = ArraySegment::create(unique_name("out"), DType::float64, {16, 16});
  pool.run(JobRequest{"square", {JobArray{in, ""}}, JobArray::of(out), {4, 4}, {}});
  const AnyArray total = private_array(DType::float64, {});
  pool.run(JobRequest{"sum", {JobArray{in, ""}}, JobArray{total, ""}, {4, 4}, {}});

  const auto* x = reinterpret_cast<const double*>(in.data());
  double expected = 0;
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(reinterpret_cast<const double*>(out.data())[i], x[i] * x[i]);
  }
  for (int t = 0; t < 16; ++t) {  // tile order, as the pool adds the partials
    double partial = 0;
    for (int r = (t / 4) * 4; r < (t / 4) * 4 + 4; ++r) {
      for (int c = (t % 4) * 4; c < (t % 4) * 4 + 4; ++c) partial += x[r * 16 + c];
    }
    expected += partial;
  }
  EXPECT_DOUBLE_EQ(*reinterpret_cast<const double*>(total.data()), expected);
}

TEST(ForkModeTest, KernelErrorNamesTheKernel) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::fork});
  JobRequest job{"add_scalar", {JobArray{private_array(DType::int8, {8, 8}), ""}},
                 JobArray{allocate_array(DType::int8, {8, 8}, Sharing::shared_with_children), ""}, {4, 4}, Params::parse(std::vector<std::string>{"value=2.5"})};
  try {
    pool.run(job);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add_scalar"), std::string::npos) << e.what();
  }
}

TEST(ForkModeTest, SharedArrayIsZeroedAndOwnsItsMapping) {
  const AnyArray a = allocate_array(DType::int32, {3, 5}, Sharing::shared_with_children);
  ASSERT_EQ(a.shape(), (Shape{3, 5}));
  ASSERT_EQ(a.dtype(), DType::int32);
  const auto* p = reinterpret_cast<const std::int32_t*>(a.data());
  for (int i = 0; i < 15; ++i) EXPECT_EQ(p[i], 0);
  const AnyArray copy = a;  // copies share the mapping
  EXPECT_EQ(copy.data(), a.data());
}

// --- killed workers -----------------------------------------------------------------------------

// An add job big enough (tens of ms) that a worker can be killed while it runs, with a
// reference result. Inputs are >= 1, so an output element still 0 was not written yet.
struct KillJob {
  static constexpr std::int64_t kSide = 2048;
  static constexpr std::int64_t kTile = 256;
  ModeArrays arrays;
  JobRequest job;
  AnyArray reference;

  explicit KillJob(Mode mode) : arrays(mode) {
    job = JobRequest{"add", {arrays.input(DType::float64, {kSide, kSide}, 1), arrays.input(DType::float64, {kSide, kSide}, 2)},
                     {}, {kTile, kTile}, {}};
    for (const JobArray& in : job.inputs) {
      auto* p = reinterpret_cast<double*>(in.array.data());
      for (std::int64_t i = 0; i < in.array.size(); ++i) p[i] = std::abs(p[i]) + 1;
    }
    job.output = arrays.output(output_spec(job));
    JobRequest ref = job;
    ref.output = JobArray{private_array(DType::float64, {kSide, kSide}), ""};
    run_inline(ref);
    reference = ref.output.array;
  }

  // Tiles whose last element has been written.
  [[nodiscard]] int tiles_done() const {
    const auto* out = reinterpret_cast<const volatile double*>(job.output.array.data());
    int done = 0;
    for (std::int64_t r = kTile - 1; r < kSide; r += kTile) {
      for (std::int64_t c = kTile - 1; c < kSide; c += kTile) done += out[r * kSide + c] != 0 ? 1 : 0;
    }
    return done;
  }
  [[nodiscard]] static int tile_count() { return static_cast<int>((kSide / kTile) * (kSide / kTile)); }
};

// Runs `job` on `pool` while another thread SIGKILLs the first worker mid-job: in fork mode once
// a quarter of the tiles are done (the children write the output; this thread only reads it),
// in copy mode 5 ms into the job (its workers always have tiles in flight while it runs).
// Returns the job's stats and whether the kill landed while tiles were left.
JobStats run_and_kill_one(Pool& pool, const KillJob& k, bool& killed_mid_job) {
  std::atomic<bool> finished{false};
  std::atomic<bool> killed{false};
  const auto start = std::chrono::steady_clock::now();
  std::thread killer([&] {
    while (!finished.load()) {
      const std::vector<pid_t> pids = pool.worker_pids();  // fork and copy pools allow this from another thread
      const bool due = pool.mode() == Mode::fork ? k.tiles_done() >= KillJob::tile_count() / 4
                                                 : std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(5);
      if (!pids.empty() && due) {
        const bool mid = pool.mode() != Mode::fork || k.tiles_done() < KillJob::tile_count();
        if (::kill(pids.front(), SIGKILL) == 0) killed = mid;
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  JobStats stats;
  try {
    stats = pool.run(k.job);
  } catch (...) {
    finished = true;
    killer.join();
    throw;
  }
  finished = true;
  killer.join();
  killed_mid_job = killed.load();
  return stats;
}

class KilledWorkerTest : public ::testing::TestWithParam<Mode> {};

TEST_P(KilledWorkerTest, JobCompletesWhenOneWorkerIsKilledMidJob) {
  // The kill lands mid-tile unless it hits the instant between two tiles; a few attempts make
  // that chance negligible (under a loaded machine the job may also finish before the killer
  // runs, hence 16). Every attempt must give the right output.
  bool retried = false;
  for (int attempt = 0; attempt < 16 && !retried; ++attempt) {
    KillJob k(GetParam());
    Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam()});
    bool killed_mid_job = false;
    JobStats stats;
    ASSERT_NO_THROW(stats = run_and_kill_one(pool, k, killed_mid_job));
    ASSERT_TRUE(same_bytes(k.job.output.array, k.reference)) << "attempt " << attempt;
    retried = killed_mid_job && stats.retries > 0;
  }
  EXPECT_TRUE(retried) << "no attempt killed a worker while it held a tile";
}

INSTANTIATE_TEST_SUITE_P(Modes, KilledWorkerTest, ::testing::Values(Mode::fork, Mode::copy),
                         [](const auto& param_info) { return std::string(mode_name(param_info.param)); });

TEST(ForkModeTest, JobFailsNamingPidAndSignalWhenEveryWorkerDies) {
  KillJob k(Mode::fork);
  Pool pool = Pool::start(PoolOptions{.workers = 1, .mode = Mode::fork});
  std::atomic<bool> finished{false};
  std::atomic<pid_t> victim{0};
  std::thread killer([&] {
    while (!finished.load()) {
      const std::vector<pid_t> pids = pool.worker_pids();
      if (!pids.empty()) {
        // Stop it first, so it cannot finish the job between our look and the kill.
        ::kill(pids.front(), SIGSTOP);
        if (k.tiles_done() < KillJob::tile_count()) {
          victim = pids.front();
          ::kill(pids.front(), SIGKILL);
        } else {
          ::kill(pids.front(), SIGCONT);
        }
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  std::string message;
  try {
    pool.run(k.job);
  } catch (const Error& e) {
    message = e.what();
    EXPECT_EQ(e.code(), Errc::job_failed);
  }
  finished = true;
  killer.join();

  if (victim.load() == 0) GTEST_SKIP() << "the lone worker finished before it could be killed";
  EXPECT_NE(message.find("pid " + std::to_string(victim.load())), std::string::npos) << message;
  EXPECT_NE(message.find("signal 9"), std::string::npos) << message;
  EXPECT_NE(message.find("add"), std::string::npos) << message;
}

}  // namespace
}  // namespace tilepool
