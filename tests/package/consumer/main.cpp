// An out-of-tree program using the installed tilepool (tests/package/install_test.sh builds and
// runs it):
//   1. runs the built-in `add` in share mode on the installed tilepool-worker;
//   2. carries a kernel of its own (`consumer_offset`, registered in main) and runs it in share
//      mode with itself as its workers: serve_as_worker_if_asked first thing in main, and
//      PoolOptions::worker_executable = /proc/self/exe (Python's spawn start method);
//   3. loads a plugin built with tilepool_add_kernel_plugin (load_plugin), finds its kernel in
//      this program's registry, gets its tilepool::Error as one, and runs it in share mode on
//      the installed tilepool-worker, which loads the plugin from the job.
// Usage: consumer WORKER_EXECUTABLE PLUGIN.so   Prints "consumer: ok" and exits 0 on success.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"
#include "tilepool/workers/worker.hpp"

namespace {

using namespace tilepool;

// This program's own kernel: out = a + 100.
struct OffsetOp {
  template <class Out, class A> void apply(Out out, const A& a) const { out = (a.array() + 100.0).matrix(); }
};
const KernelDef kOffset{
    .name = "consumer_offset", .summary = "a + 100 (float64), a kernel of the consumer program", .arity = 1,
    .dtypes = {DType::float64}, .output_spec = same_as_inputs, .iteration_shape = output_shape,
    .bind = bind_map<OffsetOp, 1, std::is_floating_point>};

int fail(const std::string& message) {
  std::fprintf(stderr, "consumer: %s\n", message.c_str());
  return 1;
}

// Runs `kernel` over a 6 x 10 float64 array in share mode on `worker`; checks out == expect(a, b).
template <class Expect>
int run_in_share_mode(const std::string& kernel, int arity, const std::string& worker, Expect expect) {
  const std::string prefix = "tpconsumer-" + std::to_string(::getpid()) + "-" + kernel;
  const Shape shape{6, 10};
  const ArraySegment a = ArraySegment::create(prefix + "-a", DType::float64, shape);
  const ArraySegment b = ArraySegment::create(prefix + "-b", DType::float64, shape);
  const ArraySegment out = ArraySegment::create(prefix + "-out", DType::float64, shape);
  const ArrayView<double> va = a.view<double>();
  const ArrayView<double> vb = b.view<double>();
  for (std::int64_t i = 0; i < va.size(); ++i) va.data()[i] = static_cast<double>(i);
  vb.matrix().setConstant(0.5);

  PoolOptions options;
  options.workers = 2;
  options.mode = Mode::share;
  options.worker_executable = worker;
  options.sample_memory = false;
  JobRequest job;
  job.kernel = kernel;
  job.inputs = {JobArray::of(a)};
  if (arity == 2) job.inputs.push_back(JobArray::of(b));
  job.output = JobArray::of(out);
  job.tile = {3, 5};
  Pool pool = Pool::start(options, &job);
  const JobStats stats = pool.run(job);

  const ArrayView<double> vo = out.view<double>();
  for (std::int64_t i = 0; i < vo.size(); ++i) {
    const double want = expect(va.data()[i], vb.data()[i]);
    if (vo.data()[i] != want) {
      return fail(kernel + ": element " + std::to_string(i) + " is " + std::to_string(vo.data()[i]) + ", expected " +
                  std::to_string(want));
    }
  }
  if (stats.tiles != 4) return fail(kernel + ": " + std::to_string(stats.tiles) + " tiles, expected 4");
  return 0;
}

int check_plugin(const std::string& path, const std::string& worker) {
  const LoadedPlugin& plugin = load_plugin(path);
  if (plugin.kernels.size() != 1 || &find_kernel("consumer_triple") != plugin.kernels[0]) {
    return fail("the plugin's kernel is not in this program's registry (libtilepool_kernels duplicated?)");
  }
  try {
    const std::vector<ArraySpec> three_d{ArraySpec{DType::float64, Shape{2, 2, 2}}};
    (void)check_inputs(find_kernel("consumer_triple"), three_d, Params{});
    return fail("consumer_triple accepted a 3-D input");
  } catch (const Error& e) {
    if (e.code() != Errc::bad_input) return fail(std::string("unexpected error kind: ") + e.what());
  }
  return run_in_share_mode("consumer_triple", 1, worker, [](double a, double) { return 3.0 * a; });
}

}  // namespace

int main(int argc, char** argv) {
  register_kernel(kOffset);
  // When a pool started this program as its worker, serve the pool and exit.
  if (const auto status = serve_as_worker_if_asked(argc, argv)) return *status;
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer WORKER_EXECUTABLE PLUGIN.so\n");
    return 2;
  }
  try {
    if (const int rc = run_in_share_mode("add", 2, argv[1], [](double a, double b) { return a + b; }); rc != 0) return rc;
    if (const int rc = run_in_share_mode("consumer_offset", 1, "/proc/self/exe", [](double a, double) { return a + 100.0; });
        rc != 0) {
      return rc;
    }
    if (const int rc = check_plugin(argv[2], argv[1]); rc != 0) return rc;
  } catch (const std::exception& e) {
    return fail(std::string("error: ") + e.what());
  }
  std::printf("consumer: ok\n");
  return 0;
}
