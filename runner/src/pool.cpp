#include "tilepool/runner/pool.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "detail/executor.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {

std::string_view mode_name(Mode mode) noexcept {
  switch (mode) {
    case Mode::share: return "share";
    case Mode::fork: return "fork";
    case Mode::copy: return "copy";
    case Mode::threads: return "threads";
  }
  return "share";
}

Mode parse_mode(std::string_view text) {
  for (const Mode m : {Mode::share, Mode::fork, Mode::copy, Mode::threads}) {
    if (mode_name(m) == text) return m;
  }
  throw Error(Errc::usage, "--mode '" + std::string(text) + "': expected share, fork, copy or threads");
}

namespace detail {

PreparedJob prepare(const JobRequest& job, std::int64_t tile_capacity) {
  PreparedJob p;
  p.kernel = &find_kernel(job.kernel);
  std::vector<ArraySpec> specs;
  for (const JobArray& in : job.inputs) specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
  p.output = check_inputs(*p.kernel, specs, job.params);
  const AnyArray& out = job.output.array;
  if (out.dtype() != p.output.dtype || out.shape() != p.output.shape) {
    throw Error(Errc::bad_input, std::string(p.kernel->name) + ": output is " + std::string(dtype_name(out.dtype())) + " " +
                                     format_shape(out.shape()) + "; expected " + std::string(dtype_name(p.output.dtype)) +
                                     " " + format_shape(p.output.shape));
  }
  const Shape space = p.kernel->iteration_shape(specs, p.output);
  if (job.tile.size() > space.size()) {
    throw Error(Errc::usage, "--tile has " + std::to_string(job.tile.size()) + " extents but " + std::string(p.kernel->name) +
                                 " tiles a " + std::to_string(space.size()) + "-D space " + format_shape(space));
  }
  p.grid = TileGrid::make(space, job.tile);
  if (p.grid.tile_count() > tile_capacity) {
    throw Error(Errc::usage, "the job has " + std::to_string(p.grid.tile_count()) + " tiles; this pool takes at most " +
                                 std::to_string(tile_capacity) + " (use larger tiles)");
  }
  return p;
}

JobDescriptor describe(const JobRequest& job, const PreparedJob& prepared, const Backing& backing, std::uint64_t job_id) {
  if (job.inputs.size() > kMaxInputs) throw Error(Errc::usage, "too many inputs (at most " + std::to_string(kMaxInputs) + ")");
  JobDescriptor desc;
  desc.job_id = job_id;
  JobDescriptor::set_text(desc.kernel, sizeof desc.kernel, job.kernel, "kernel name");
  desc.input_count = static_cast<std::uint32_t>(job.inputs.size());
  for (std::size_t i = 0; i < job.inputs.size(); ++i) {
    JobDescriptor::set_text(desc.inputs[i], kNameCapacity, job.inputs[i].segment, "input segment name");
  }
  JobDescriptor::set_text(desc.output, kNameCapacity, job.output.segment, "output segment name");
  JobDescriptor::set_text(desc.backing, kBackingCapacity, backing.spec(), "backing");
  JobDescriptor::set_text(desc.params, kParamsCapacity, job.params.to_text(), "--param list");
  const Shape& space = prepared.grid.shape();
  desc.ndim = static_cast<std::int32_t>(space.size());
  std::copy(space.begin(), space.end(), desc.shape);
  desc.tile_ndim = static_cast<std::int32_t>(job.tile.size());
  std::copy(job.tile.begin(), job.tile.end(), desc.tile);
  desc.tile_count = prepared.grid.tile_count();
  return desc;
}

namespace {
std::atomic<int> g_interrupt_signal{0};
extern "C" void on_interrupt(int sig) { g_interrupt_signal.store(sig); }
}  // namespace

void wait_for_job(ControlBlock& control, const JobRequest& job, const std::function<void()>& supervise) {
  while (!control.job_complete() && !control.job_failed()) {
    control.wait_for_progress(std::chrono::milliseconds(20));
    if (const int sig = g_interrupt_signal.load(); sig != 0) {
      throw Error(Errc::interrupted, std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : ::strsignal(sig)) +
                                         "; workers stopped, job segments removed");
    }
    if (supervise) supervise();
    if (job.progress) job.progress(control.tiles_done(), control.job().tile_count);
  }
  if (control.job_failed()) throw Error(Errc::job_failed, control.error_message());
}

JobStats stats_of(const ControlBlock& control, const PreparedJob& prepared) {
  JobStats s;
  s.tiles = prepared.grid.tile_count();
  // The worker that finished the last tile stamps the time just after counting it.
  std::int64_t last = control.last_done_ns();
  for (int spin = 0; last == 0 && s.tiles > 0 && spin < 10000; ++spin) last = control.last_done_ns();
  s.compute_s = seconds_between(control.first_claim_ns(), last == 0 ? monotonic_ns() : last);
  s.retries = control.tiles_requeued_total();
  return s;
}

namespace {

// Writes a reduction's result into its 0-d output: float64, or int64 (wrapping like numpy).
void store_sum(const AnyArray& output, double f64, std::uint64_t i64) {
  if (output.dtype() == DType::float64) {
    std::memcpy(output.data(), &f64, sizeof f64);
  } else {
    const auto v = static_cast<std::int64_t>(i64);
    std::memcpy(output.data(), &v, sizeof v);
  }
}

}  // namespace

void finish_reduction(ControlBlock& control, const PreparedJob& prepared, const AnyArray& output) {
  if (prepared.kernel->reduction == Reduction::none) return;
  double f64 = 0;
  std::uint64_t i64 = 0;
  for (std::int64_t t = 0; t < prepared.grid.tile_count(); ++t) {
    f64 += control.partial(t).f64;
    i64 += static_cast<std::uint64_t>(control.partial(t).i64);
  }
  store_sum(output, f64, i64);
}

std::filesystem::path find_worker_executable(const PoolOptions& options) {
  std::filesystem::path exe = options.worker_executable;
  if (exe.empty()) {
    if (const char* env = std::getenv("TILEPOOL_WORKER"); env != nullptr && *env != '\0') {
      exe = env;
    } else {
      std::error_code ec;
      exe = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "tilepool-worker";
    }
  }
  if (::access(exe.c_str(), X_OK) != 0) {
    throw Error(Errc::system, "cannot run the worker executable " + exe.string() +
                                  " (expected tilepool-worker beside tilepool, or set TILEPOOL_WORKER)");
  }
  return exe;
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
  }
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) noexcept {
  if (from_ns == 0 || to_ns == 0 || to_ns < from_ns) return 0;
  return static_cast<double>(to_ns - from_ns) * 1e-9;
}

AnonymousRegion::AnonymousRegion(std::size_t bytes) : size_(bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw system_error("mmap of " + std::to_string(bytes) + " bytes", errno);
  data_ = p;
}

AnonymousRegion::AnonymousRegion(AnonymousRegion&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AnonymousRegion::~AnonymousRegion() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace detail

Pool::Pool(std::unique_ptr<detail::Executor> impl) : impl_(std::move(impl)) {}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&&) noexcept = default;
Pool::~Pool() = default;

Pool Pool::start(const PoolOptions& options, const JobRequest* first_job) {
  PoolOptions o = options;
  if (o.workers <= 0) o.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.workers > kMaxWorkers) {
    throw Error(Errc::usage, "--workers " + std::to_string(o.workers) + ": at most " + std::to_string(kMaxWorkers));
  }
  switch (o.mode) {
    case Mode::share: return Pool(detail::make_share_executor(o, first_job));
    case Mode::threads: return Pool(detail::make_thread_executor(o));
    case Mode::fork: return Pool(detail::make_fork_executor(o));
    case Mode::copy: return Pool(detail::make_copy_executor(o));
  }
  throw Error(Errc::usage, "--mode " + std::to_string(static_cast<int>(o.mode)) + ": unknown mode");
}

JobStats Pool::run(const JobRequest& job) { return impl_->run(job, detail::prepare(job, impl_->tile_capacity())); }
Mode Pool::mode() const noexcept { return impl_->mode(); }
int Pool::worker_count() const noexcept { return impl_->worker_count(); }
double Pool::spawn_seconds() const noexcept { return impl_->spawn_seconds(); }
std::vector<pid_t> Pool::worker_pids() const { return impl_->worker_pids(); }

ArraySpec output_spec(const JobRequest& job) {
  const KernelDef& k = find_kernel(job.kernel);
  std::vector<ArraySpec> specs;
  for (const JobArray& in : job.inputs) specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
  return check_inputs(k, specs, job.params);
}

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = detail::on_interrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int interrupt_signal() noexcept { return detail::g_interrupt_signal.load(); }

void run_inline(const JobRequest& job) {
  const detail::PreparedJob prepared = detail::prepare(job, std::int64_t{1} << 40);
  std::vector<AnyArray> inputs;
  for (const JobArray& in : job.inputs) inputs.push_back(in.array);
  auto bound = prepared.kernel->bind(inputs, job.output.array, job.params);
  double f64 = 0;
  std::uint64_t i64 = 0;
  for (std::int64_t t = 0; t < prepared.grid.tile_count(); ++t) {
    TileResult r;
    bound->run_tile(prepared.grid.box(t), r);
    f64 += r.f64;
    i64 += static_cast<std::uint64_t>(r.i64);
  }
  if (prepared.kernel->reduction == Reduction::sum) detail::store_sum(job.output.array, f64, i64);
}

}  // namespace tilepool
