// An out-of-tree program using the installed tilepool: makes two array segments, runs the
// built-in `add` kernel over them in share mode on the installed tilepool-worker, checks the
// result, then loads a plugin built with tilepool_add_kernel_plugin and checks that it shares
// this program's kernel registry and that its tilepool::Error reaches us as one.
// Usage: consumer WORKER_EXECUTABLE PLUGIN.so   Prints "consumer: ok" and exits 0 on success.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <string>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/kernel.hpp"

namespace {

int fail(const std::string& message) {
  std::fprintf(stderr, "consumer: %s\n", message.c_str());
  return 1;
}

int run_add_in_share_mode(const char* worker) {
  using namespace tilepool;
  const std::string prefix = "tpconsumer-" + std::to_string(::getpid());
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
  job.kernel = "add";
  job.inputs = {JobArray::of(a), JobArray::of(b)};
  job.output = JobArray::of(out);
  job.tile = {3, 5};
  Pool pool = Pool::start(options, &job);
  const JobStats stats = pool.run(job);

  const ArrayView<double> vo = out.view<double>();
  for (std::int64_t i = 0; i < vo.size(); ++i) {
    if (vo.data()[i] != va.data()[i] + 0.5) {
      return fail("add: element " + std::to_string(i) + " is " + std::to_string(vo.data()[i]) + ", expected " +
                  std::to_string(va.data()[i] + 0.5));
    }
  }
  if (stats.tiles != 4) return fail("add: " + std::to_string(stats.tiles) + " tiles, expected 4");
  return 0;
}

int check_plugin(const char* path) {
  void* plugin = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (plugin == nullptr) return fail(std::string("dlopen: ") + ::dlerror());
  using FindKernel = const void* (*)(const char*);
  auto* find = reinterpret_cast<FindKernel>(::dlsym(plugin, "consumer_plugin_find_kernel"));
  if (find == nullptr) return fail(std::string("dlsym: ") + ::dlerror());
  if (find("add") != &tilepool::find_kernel("add")) {
    return fail("the plugin sees another kernel registry than the program (libtilepool_kernels duplicated)");
  }
  try {
    find("no-such-kernel");
    return fail("the plugin found a kernel called no-such-kernel");
  } catch (const tilepool::Error& e) {
    if (e.code() != tilepool::Errc::usage) return fail(std::string("unexpected error kind: ") + e.what());
  }
  ::dlclose(plugin);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: consumer WORKER_EXECUTABLE PLUGIN.so\n");
    return 2;
  }
  try {
    if (const int rc = run_add_in_share_mode(argv[1]); rc != 0) return rc;
    if (const int rc = check_plugin(argv[2]); rc != 0) return rc;
  } catch (const std::exception& e) {
    return fail(std::string("error: ") + e.what());
  }
  std::printf("consumer: ok\n");
  return 0;
}
