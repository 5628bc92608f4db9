// The one job runner: a job's life, written once for every mode.
#include "detail/job_runner.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool::detail {
namespace {

constexpr auto kWaitSlice = std::chrono::milliseconds(20);

double seconds_between(std::int64_t from_ns, std::int64_t to_ns) noexcept {
  if (from_ns == 0 || to_ns == 0 || to_ns < from_ns) return 0;
  return static_cast<double>(to_ns - from_ns) * 1e-9;
}

// Adds the per-tile partials in tile order (so the result does not depend on who ran which
// tile) into a reduction's 0-d output: float64, or int64 wrapping like numpy.
void finish_reduction(ControlBlock& control, const PreparedJob& prepared, const AnyArray& output) {
  if (prepared.kernel->reduction == Reduction::none) return;
  store_total(sum_in_tile_order(control.partials(prepared.tile_count)), output);
}

JobStats stats_of(const ControlBlock& control, const PreparedJob& prepared) {
  JobStats s;
  s.tiles = prepared.tile_count;
  // The worker that finished the last tile stamps the time just after counting it.
  std::int64_t last = control.last_done_ns();
  for (int spin = 0; last == 0 && s.tiles > 0 && spin < 10000; ++spin) last = control.last_done_ns();
  s.compute_s = seconds_between(control.first_claim_ns(), last == 0 ? monotonic_ns() : last);
  s.retries = control.tiles_requeued_total();
  return s;
}

}  // namespace

JobRunner::JobRunner(const PoolOptions& options, const StagedJob* first_job)
    : JobRunner(options, [&](Supervisor& supervisor) { return launcher_row(options.mode).make(options, first_job, supervisor); }) {}

JobRunner::JobRunner(const PoolOptions& options, const MakeLauncher& make)
    : options_(options), supervisor_(options.max_tile_retries, options.tile_timeout) {
  launcher_ = make(supervisor_);
  TILEPOOL_CHECK(launcher_ != nullptr);
}

JobStats JobRunner::run(const JobRequest& job) { return run(job, prepare(job)); }

JobStats JobRunner::run(const JobRequest& job, const PreparedJob& prepared) {
  launcher_->check(job, prepared);
  ControlBlock& control = launcher_->control_for(prepared.tile_count);
  supervisor_.begin(control, prepared);
  // Between jobs no worker stays inside the last one, except one still leaving it (in its bound
  // kernel's destructor) or dying there: post_job waits for every worker to leave, so the dead
  // are let out (and replaced) while we wait, and the user's signal is looked at.
  while (!control.wait_until_idle(kWaitSlice)) {
    throw_if_interrupted();
    if (launcher_->runner_supervises()) Supervisor::replace_idle_deaths(*launcher_, control);
  }
  if (launcher_->runner_supervises()) Supervisor::replace_idle_deaths(*launcher_, control);
  JobDescriptor desc = describe(job, prepared, next_job_id_++);
  desc.stamp_claims = options_.tile_timeout.count() > 0 ? 1 : 0;
  desc.dispatch = options_.dispatch;
  desc.check_regions = job.check_regions ? 1 : 0;
  control.post_job(desc, [&] { launcher_->bind(job, prepared); });
  std::uint64_t peak = 0;
  try {
    launcher_->start_job();
    wait(control, job, peak);
  } catch (...) {
    // Interrupted or failed: no worker claims another tile (threads, which cannot be killed,
    // finish the tile they run and stop). The first error's text stays, if there was one.
    control.report_error("the job was stopped");
    launcher_->end_job(/*abandoned=*/true);
    throw;
  }
  launcher_->end_job(/*abandoned=*/false);
  finish_reduction(control, prepared, job.output.array);
  JobStats stats = stats_of(control, prepared);
  stats.bytes_copied = launcher_->bytes_copied();
  stats.peak_pss_bytes = peak;
  if (prepared.kernel->reduction != Reduction::none) {
    const auto partials = control.partials(prepared.tile_count);
    stats.partials.assign(partials.begin(), partials.end());
  }
  return stats;
}

void JobRunner::wait(ControlBlock& control, const JobRequest& job, std::uint64_t& peak_pss) {
  // The user's signal is checked before the first wait and after the last: a job that is over
  // within one slice (hundreds of workers on 16 tiles) is still stopped by a signal that came
  // while its workers started.
  throw_if_interrupted();
  while (!control.job_complete() && !control.job_failed()) {
    control.wait_for_progress(kWaitSlice);
    if (job.cancel != nullptr && job.cancel->load(std::memory_order_relaxed)) {
      throw Error(Errc::interrupted, "cancelled; workers stopped, job segments removed");
    }
    throw_if_interrupted();
    if (launcher_->runner_supervises()) supervisor_.check(*launcher_);
    if (job.progress) job.progress(control.tiles_done(), control.job().tile_count);
  }
  // A failure that the interruption caused (copy mode's I/O thread, stopped starting a worker)
  // is reported as the interruption.
  throw_if_interrupted();
  // The worker's kind of error (a full store, a replaced segment, a failed tile) and its words.
  if (control.job_failed()) throw control.error();
  // Sampled once, after the last tile: every page the job touched is mapped now (arrays are
  // made before the job and only grow while it runs), and no walk of /proc/PID/smaps_rollup
  // (about 20 ms of CPU per process at 3 x 128 MiB) competes with the workers for a core.
  if (options_.sample_memory) peak_pss = pss_bytes_with(launcher_->worker_pids());
}

std::vector<pid_t> pids_in(const ControlBlock& control, int workers) {
  std::vector<pid_t> pids;
  for (int slot = 0; slot < workers; ++slot) {
    if (const pid_t pid = control.worker(slot).pid.load(std::memory_order_acquire); pid > 0) {
      pids.push_back(pid);
    }
  }
  return pids;
}

std::vector<ArraySpec> input_specs(const JobRequest& job) {
  std::vector<ArraySpec> specs;
  for (const JobArray& in : job.inputs) specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
  return specs;
}

TileGrid tile_grid_of(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output, const Shape& tile) {
  return tile_grid_over(kernel, iteration_shape_of(kernel, inputs, output), tile);
}

TileGrid tile_grid_over(const KernelDef& kernel, const Shape& space, const Shape& tile) {
  if (tile.size() > space.size()) {
    throw Error(Errc::usage, fmt::format("{} tile extents, but {} tiles a {}-D space {}", tile.size(), kernel.name, space.size(),
                                         format_shape(space)));
  }
  return TileGrid::make(space, tile);
}

PreparedJob prepare(const JobRequest& job) {
  const KernelDef& kernel = find_kernel(job.kernel);
  const std::vector<ArraySpec> specs = input_specs(job);
  const ArraySpec output = check_inputs(kernel, specs, job.params);
  return prepare_planned(job, kernel, output, tile_grid_of(kernel, specs, output, job.tile));
}

PreparedJob prepare_planned(const JobRequest& job, const KernelDef& kernel, const ArraySpec& output, TileGrid grid) {
  PreparedJob p;
  p.kernel = &kernel;
  p.output = output;
  const AnyArray& out = job.output.array;
  if (out.dtype() != p.output.dtype || out.shape() != p.output.shape) {
    throw Error(Errc::bad_input, fmt::format("{}: output is {} {}; expected {} {}", p.kernel->name, dtype_name(out.dtype()),
                                             format_shape(out.shape()), dtype_name(p.output.dtype), format_shape(p.output.shape)));
  }
  p.grid = std::move(grid);
  const std::int64_t n = p.grid.tile_count();
  const TileRange& r = job.tiles;
  if (r.first < 0 || r.first > n || (r.count >= 0 && r.count > n - r.first)) {
    throw Error(Errc::usage, fmt::format("tile range [{}, {}) is not inside the grid's {} tiles", r.first,
                                         r.count < 0 ? n : r.first + r.count, n));
  }
  p.first_tile = r.first;
  p.tile_count = r.count < 0 ? n - r.first : r.count;
  return p;
}

JobDescriptor describe(const JobRequest& job, const PreparedJob& prepared, std::uint64_t job_id) {
  if (job.inputs.size() > kMaxInputs) throw Error(Errc::usage, fmt::format("{} inputs; at most {}", job.inputs.size(), kMaxInputs));
  JobDescriptor desc;
  desc.job_id = job_id;
  JobDescriptor::set_text(desc.kernel, sizeof desc.kernel, job.kernel, "kernel name");
  desc.input_count = static_cast<std::uint32_t>(job.inputs.size());
  for (std::size_t i = 0; i < job.inputs.size(); ++i) {
    JobDescriptor::set_text(desc.inputs[i], kNameCapacity, job.inputs[i].segment, "input segment name");
    JobDescriptor::set_text(desc.input_backings[i], kBackingCapacity, job.inputs[i].backing.spec(), "input backing");
    desc.input_identities[i] = job.inputs[i].identity.value_or(SegmentIdentity{});
    desc.input_arrays[i] = ArrayDescription::of(job.inputs[i].array.dtype(), job.inputs[i].array.shape());
  }
  desc.output_array = ArrayDescription::of(prepared.output.dtype, prepared.output.shape);
  JobDescriptor::set_text(desc.output, kNameCapacity, job.output.segment, "output segment name");
  JobDescriptor::set_text(desc.output_backing, kBackingCapacity, job.output.backing.spec(), "output backing");
  desc.output_identity = job.output.identity.value_or(SegmentIdentity{});
  JobDescriptor::set_text(desc.params, kParamsCapacity, job.params.to_text(), "parameter list");
  JobDescriptor::set_text(desc.plugin, kPluginPathCapacity, pinned_plugin_of(*prepared.kernel), "plugin path");
  const Shape& space = prepared.grid.shape();
  desc.ndim = static_cast<std::int32_t>(space.size());
  std::copy(space.begin(), space.end(), desc.shape);
  desc.tile_ndim = static_cast<std::int32_t>(job.tile.size());
  std::copy(job.tile.begin(), job.tile.end(), desc.tile);
  desc.tile_count = prepared.tile_count;
  desc.first_tile = prepared.first_tile;
  return desc;
}

}  // namespace tilepool::detail
