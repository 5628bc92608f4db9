// run_job, the job layer every front end calls: array sources (files, segments, a caller's
// memory, a registered format), output targets, what is copied and counted, inputs changed
// under a job, cancellation, errors that name the spec's field.
#include "tilepool/runner/job.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "support/test_support.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/allocation.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

namespace tilepool {
namespace {

using testing::TempDir;
using testing::unique_name;

const Shape kShape{5, 8, 8};

std::vector<double> ramp(std::size_t n, double start) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

void save(const std::filesystem::path& path, const std::vector<double>& values) {
  npy::write_file(path, DType::float64, kShape, std::as_bytes(std::span(values)));
}

std::vector<double> values_of(const AnyArray& a) {
  const auto* p = reinterpret_cast<const double*>(a.data());
  return {p, p + a.size()};
}

std::vector<double> sum_of(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> s(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}

// A caller's array in private memory, as a C++ program or the Python module holds one.
JobArray caller_array(const std::vector<double>& values) {
  JobArray a{allocate_array(DType::float64, kShape, Sharing::private_to_process), ""};
  std::memcpy(a.array.data(), values.data(), values.size() * sizeof(double));
  return a;
}

class JobTest : public ::testing::TestWithParam<Mode> {
 protected:
  void TearDown() override { EXPECT_EQ(testing::leftovers(), std::vector<std::string>{}); }

  JobSpec spec_for(std::vector<std::shared_ptr<ArraySource>> inputs, std::shared_ptr<OutputTarget> output) const {
    JobSpec spec;
    spec.kernel = "add";
    spec.inputs = std::move(inputs);
    spec.output = std::move(output);
    spec.tile = Shape{4, 4};
    spec.mode = GetParam();
    spec.workers = 2;
    return spec;
  }
  TempDir dir_;
  const std::vector<double> a_ = ramp(320, 0.5), b_ = ramp(320, -100.25);
};

TEST_P(JobTest, FilesInAFileOutPublishedWholeAndNothingCopied) {
  save(dir_ / "a.npy", a_);
  save(dir_ / "b.npy", b_);
  const std::string out = (dir_ / "out.npy").string();

  const JobReport r = run_job(spec_for({open_source((dir_ / "a.npy").string()), open_source((dir_ / "b.npy").string())},
                                       open_target(out)));

  const npy::Header h = npy::read_file_header(out);
  std::vector<double> got(a_.size());
  npy::read_file_data(out, h, std::as_writable_bytes(std::span(got)));
  EXPECT_EQ(got, sum_of(a_, b_));
  EXPECT_EQ(r.tiles, 4);
  EXPECT_EQ(r.shape, kShape);
  if (GetParam() != Mode::copy) {
    EXPECT_EQ(r.bytes_copied, 0u);
  }
}

TEST_P(JobTest, ABigEndianFileIsConvertedAndRunsInEveryMode) {
  // a_ is 0.5, 1.5, ...: the same values, big-endian, as numpy writes them.
  ASSERT_EQ(testing::run_python("import numpy as np\nnp.save('" + (dir_ / "be.npy").string() +
                                "', (np.arange(320.0) + 0.5).reshape(5, 8, 8).astype('>f8'))\n").status, 0);
  save(dir_ / "b.npy", b_);

  const JobReport r = run_job(spec_for({open_source((dir_ / "be.npy").string()), open_source((dir_ / "b.npy").string())},
                                       new_array_target()));

  EXPECT_EQ(values_of(r.result), sum_of(a_, b_));
}

TEST_P(JobTest, CallerArraysAreCopiedOnlyWhereTheModeCannotReachThemAndTheCopiesAreCounted) {
  JobArray out{allocate_array(DType::float64, kShape, Sharing::private_to_process), ""};

  const JobReport r = run_job(spec_for({array_source(caller_array(a_)), array_source(caller_array(b_))}, array_target(out)));

  EXPECT_EQ(values_of(out.array), sum_of(a_, b_));
  EXPECT_EQ(values_of(r.result), sum_of(a_, b_));
  const std::uint64_t bytes = a_.size() * sizeof(double);
  switch (GetParam()) {
    case Mode::share: EXPECT_EQ(r.bytes_copied, 3 * bytes); break;  // two inputs in, the output back
    case Mode::fork: EXPECT_EQ(r.bytes_copied, bytes); break;       // the output back from shared memory
    case Mode::copy: EXPECT_EQ(r.bytes_copied, 3 * bytes); break;   // every tile's bytes through pipes
    case Mode::threads: EXPECT_EQ(r.bytes_copied, 0u); break;
  }
}

TEST_P(JobTest, NamedSegmentsAreUsedInPlaceInEveryMode) {
  const std::string na = unique_name("a"), nb = unique_name("b");
  ArraySegment sa = ArraySegment::create(na, DType::float64, kShape);
  ArraySegment sb = ArraySegment::create(nb, DType::float64, kShape);
  std::memcpy(sa.data(), a_.data(), sa.data_bytes());
  std::memcpy(sb.data(), b_.data(), sb.data_bytes());

  const JobReport r = run_job(spec_for({array_source(JobArray::of(sa)), open_source("shm:" + nb)}, new_array_target()));

  EXPECT_EQ(values_of(r.result), sum_of(a_, b_));
  if (GetParam() != Mode::copy) {
    EXPECT_EQ(r.bytes_copied, 0u);
  }
}

TEST_P(JobTest, ANewArrayOutlivesTheJobButLeavesNoNameInTheStore) {
  JobReport r = run_job(spec_for({array_source(caller_array(a_)), array_source(caller_array(b_))}, new_array_target()));

  EXPECT_EQ(testing::entries_with_prefix(fmt::format("tilepool-{}-", ::getpid())), std::vector<std::string>{});
  EXPECT_EQ(values_of(r.result), sum_of(a_, b_));
}

TEST_P(JobTest, InputRewrittenInPlaceDuringTheJobFailsItAndNothingIsPublished) {
  save(dir_ / "a.npy", a_);
  save(dir_ / "b.npy", b_);
  const std::string out = (dir_ / "out.npy").string();
  JobSpec spec = spec_for({open_source((dir_ / "a.npy").string()), open_source((dir_ / "b.npy").string())}, open_target(out));
  bool rewritten = false;
  // What np.save over the input does: truncate the same file, write the same bytes again.
  const std::filesystem::path a_path = dir_ / "a.npy";
  std::string bytes;
  {
    std::ifstream in(a_path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  spec.progress = [&](std::int64_t, std::int64_t) {
    if (rewritten) return;
    rewritten = true;
    usleep(20'000);  // past the filesystem clock's tick, so the write gets a new time
    std::ofstream(a_path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };

  try {
    (void)run_job(spec);
    ADD_FAILURE() << "a job whose input was rewritten succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::job_failed);
    EXPECT_NE(std::string(e.what()).find("a.npy: changed while the job ran"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_P(JobTest, InputReplacedByAnotherFileDuringTheJobFailsIt) {
  save(dir_ / "a.npy", a_);
  save(dir_ / "b.npy", b_);
  save(dir_ / "new.npy", b_);
  JobSpec spec = spec_for({open_source((dir_ / "a.npy").string()), open_source((dir_ / "b.npy").string())}, new_array_target());
  spec.progress = [&](std::int64_t, std::int64_t) {
    std::error_code ec;
    std::filesystem::rename(dir_ / "new.npy", dir_ / "a.npy", ec);
  };

  try {
    (void)run_job(spec);
    ADD_FAILURE() << "a job whose input was replaced succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another file took its name"), std::string::npos) << e.what();
  }
}

TEST_P(JobTest, CancelStopsTheJobAsInterruptedAndLeavesNothing) {
  std::atomic<bool> cancel{true};
  JobSpec spec = spec_for({array_source(caller_array(a_)), array_source(caller_array(b_))}, new_array_target());
  spec.cancel = &cancel;
  spec.tile = Shape{1, 1};

  try {
    (void)run_job(spec);
    // A job may finish before the runner first looks at the flag; then it succeeded whole.
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::interrupted) << e.what();
  }
}

TEST_P(JobTest, AnOutputThatIsAlsoTheInputIsBuiltApartSoHalosReadTheOriginal) {
  JobSpec reference = spec_for({array_source(caller_array(a_))}, new_array_target());
  reference.kernel = "blur3x3";
  reference.tile = Shape{2, 2};
  const std::vector<double> expected = values_of(run_job(reference).result);
  const JobArray x = caller_array(a_);
  JobSpec in_place = spec_for({array_source(x)}, array_target(x));
  in_place.kernel = "blur3x3";
  in_place.tile = Shape{2, 2};

  (void)run_job(in_place);

  EXPECT_EQ(values_of(x.array), expected);
}

// A kernel slow enough to be stopped mid-job: each tile sleeps, then writes 1s.
const KernelDef kSlowOnes{
    .name = "test_slow_ones",
    .summary = "sleeps 20 ms per tile, then fills it with 1",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) { return inputs[0]; },
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) { return output.shape; },
    .bind = [](std::span<const AnyArray>, const AnyArray& output, const Params&) -> std::unique_ptr<BoundKernel> {
      struct Bound final : BoundKernel {
        AnyArray out;
        void run_tile(const Box& box, TileResult&) override {
          usleep(20'000);
          const ArrayView<double> view = out.as<double>();
          auto tile = view.tile(box);
          for (std::int64_t p = 0; p < tile.plane_count(); ++p) tile.plane(p).setConstant(1.0);
        }
      };
      auto b = std::make_unique<Bound>();
      b->out = output;
      return b;
    },
};
const bool kSlowRegistered = (register_kernel(kSlowOnes), true);

// After run_job returns, cancelled, no worker writes the caller's output any more (threads
// finish their tile first; share workers still holding one are stopped).
TEST_P(JobTest, NoWorkerWritesTheOutputOnceACancelledJobHasReturned) {
  if (GetParam() == Mode::fork || GetParam() == Mode::copy) GTEST_SKIP() << "fork and copy modes end their workers' writes themselves";
  ASSERT_TRUE(kSlowRegistered);
  const std::string name = unique_name("out");
  ArraySegment out = ArraySegment::create(name, DType::float64, kShape);
  std::atomic<bool> cancel{false};
  JobSpec spec = spec_for({array_source(caller_array(a_))}, array_target(JobArray::of(out)));
  spec.kernel = "test_slow_ones";
  spec.tile = Shape{1, 1};  // 64 tiles of 20 ms on 2 workers: about 640 ms
  spec.cancel = &cancel;
  spec.progress = [&](std::int64_t done, std::int64_t) {
    if (done > 0) cancel = true;
  };
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = GetParam(),
                                      .worker_executable = std::filesystem::read_symlink("/proc/self/exe")});

  EXPECT_THROW((void)run_job(spec, &pool), Error);
  std::vector<double> after_return = values_of(out.array());
  usleep(100'000);

  EXPECT_EQ(values_of(out.array()), after_return);
  EXPECT_LT(std::count(after_return.begin(), after_return.end(), 1.0), static_cast<std::ptrdiff_t>(after_return.size()));
}

// `add`, counting in this process how often its shape hooks are asked: preparing a job (kernel
// found, inputs checked, grid made) happens once per job, whoever starts the pool.
std::atomic<int> g_output_specs{0}, g_iteration_shapes{0};
const KernelDef& counted_add() {
  static const KernelDef add = find_kernel("add");
  static const KernelDef def = [] {
    KernelDef k = add;
    k.name = "test_counted_add";
    k.output_spec = [](std::span<const ArraySpec> inputs, const Params& params) {
      ++g_output_specs;
      return add.output_spec(inputs, params);
    };
    k.iteration_shape = [](std::span<const ArraySpec> inputs, const ArraySpec& output) {
      ++g_iteration_shapes;
      return add.iteration_shape != nullptr ? add.iteration_shape(inputs, output) : output.shape;
    };
    return k;
  }();
  return def;
}
const bool kCountedRegistered = (register_kernel(counted_add()), true);

TEST_P(JobTest, AJobIsPreparedOnceInTheRunner) {
  ASSERT_TRUE(kCountedRegistered);
  // Share and copy workers are this program (serve_as_worker_if_asked in test_main), which
  // knows the kernel; their own calls are in their processes, not counted here.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  ASSERT_EQ(::setenv("TILEPOOL_WORKER", self.c_str(), 1), 0);
  JobSpec spec = spec_for({array_source(caller_array(a_)), array_source(caller_array(b_))}, new_array_target());
  spec.kernel = "test_counted_add";
  g_output_specs = 0;
  g_iteration_shapes = 0;
  const JobReport r = run_job(spec);
  ::unsetenv("TILEPOOL_WORKER");
  EXPECT_EQ(values_of(r.result), sum_of(a_, b_));
  EXPECT_EQ(g_output_specs.load(), 1);
  EXPECT_EQ(g_iteration_shapes.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Modes, JobTest, ::testing::Values(Mode::share, Mode::fork, Mode::copy, Mode::threads),
                         [](const ::testing::TestParamInfo<Mode>& param) { return std::string(mode_name(param.param)); });

TEST(JobSpecTest, ATileThatDoesNotFitIsASpecErrorAboutTheTile) {
  JobSpec spec;
  spec.kernel = "negate";
  spec.inputs = {array_source(caller_array(ramp(320, 0)))};
  spec.output = new_array_target();
  spec.tile = Shape{1, 1, 1, 1};
  spec.mode = Mode::threads;

  try {
    (void)run_job(spec);
    ADD_FAILURE() << "no error";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.field(), JobField::tile);
    EXPECT_EQ(e.value(), "1,1,1,1");
    EXPECT_EQ(e.code(), Errc::usage);
  }
}

TEST(JobSpecTest, AMissingTileIsASpecErrorSayingItIsRequired) {
  JobSpec spec;
  spec.kernel = "negate";
  spec.inputs = {array_source(caller_array(ramp(320, 0)))};
  spec.output = new_array_target();
  spec.mode = Mode::threads;

  try {
    (void)run_job(spec);
    ADD_FAILURE() << "no error";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.field(), JobField::tile);
    EXPECT_NE(std::string(e.what()).find("is required"), std::string::npos);
  }
}

TEST(JobSpecTest, ARegisteredFormatIsOneSourceTheJobLayerOpensByItsText) {
  const std::vector<double> values = ramp(320, 3);
  register_array_format(ArrayFormat{
      "test-ramp", [](std::string_view text) { return text.starts_with("test-ramp:"); },
      [values](const std::string& text, const Backing&) { return array_source(caller_array(values), text); }, nullptr,
      "test-ramp:NAME"});
  // Help and messages name it beside the built-in forms.
  EXPECT_EQ(array_forms(), "FILE.npy, shm:NAME or test-ramp:NAME");
  JobSpec spec;
  spec.kernel = "negate";
  spec.inputs = {open_source("test-ramp:x")};
  spec.output = new_array_target();
  spec.tile = Shape{4, 4};
  spec.mode = Mode::threads;

  const JobReport r = run_job(spec);

  std::vector<double> expected(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) expected[i] = -values[i];
  EXPECT_EQ(values_of(r.result), expected);
  EXPECT_THROW((void)open_target("test-ramp:x"), SpecError);  // input only: no target
}

TEST(JobSpecTest, AWarmPoolRunsManyJobsFromSpecs) {
  Pool pool = Pool::start(PoolOptions{.workers = 2, .mode = Mode::share});
  for (int i = 0; i < 20; ++i) {
    JobSpec spec;
    spec.kernel = "add";
    spec.inputs = {array_source(caller_array(ramp(320, i))), array_source(caller_array(ramp(320, 1)))};
    spec.output = new_array_target();
    spec.tile = Shape{4, 4};
    const JobReport r = run_job(spec, &pool);
    ASSERT_EQ(values_of(r.result), sum_of(ramp(320, i), ramp(320, 1)));
    EXPECT_EQ(r.spawn_s, 0.0);
  }
}

}  // namespace
}  // namespace tilepool
