// run_job: the life of a job, written once for every front end — plan (plugins, kernel,
// sources' specs, grid), check the output, place the arrays, run on a pool, check the inputs
// did not change, publish.
#include "tilepool/runner/job.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fmt/format.h>

#include "detail/job_runner.hpp"
#include "detail/launcher.hpp"
#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/runner/report_json.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/workers/plugin.hpp"

namespace tilepool {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string extents_text(const Shape& tile) { return fmt::format("{}", fmt::join(tile, ",")); }

// Runs `f`; an Error it throws comes back as a SpecError about `field` (a SpecError as it is).
template <class F>
decltype(auto) about(JobField field, const std::string& value, F&& f) {
  try {
    return f();
  } catch (const SpecError&) {
    throw;
  } catch (const Error& e) {
    throw SpecError(field, value, e);
  }
}

void check_settings(const JobSpec& spec) {
  if (spec.workers < 0 || spec.workers > kMaxWorkers) {
    throw SpecError(JobField::workers, std::to_string(spec.workers),
                    Error(Errc::usage, fmt::format("expected 0 (one per core) to {}", kMaxWorkers)));
  }
  if (spec.tile_timeout.count() < 0) {
    throw SpecError(JobField::tile_timeout, fmt::format("{}", spec.tile_timeout.count() / 1000.0),
                    Error(Errc::usage, "expected a number of seconds >= 0"));
  }
  detail::check_tile_timeout(spec.mode, spec.tile_timeout);
  spec.dispatch.check();
  if (spec.inputs.empty()) throw SpecError(JobField::input, "", Error(Errc::usage, "at least one input is required"));
  if (spec.output == nullptr) throw SpecError(JobField::output, "", Error(Errc::usage, "an output is required"));
}

// Publishes the finished output. The work is done but a result that cannot be delivered fails
// the job (exit 1); the unpublished output goes with its handle.
void publish(OutputTarget& output, bool force) {
  try {
    output.publish(force);
  } catch (const Error& e) {
    throw SpecError(JobField::output, output.text(),
                    Error(e.code() == Errc::exists ? Errc::exists : Errc::job_failed,
                          fmt::format("{}: the result was not published: {}", output.text(), e.what())));
  }
}

}  // namespace

JobPlan plan_job(const JobSpec& spec) {
  const CancelScope cancellable(spec.cancel);  // a plugin that hangs while it loads included
  check_settings(spec);
  for (const auto& path : spec.plugins) about(JobField::plugin, path.string(), [&] { (void)load_plugin(path.string()); });
  JobPlan plan;
  plan.kernel = &about(JobField::kernel, spec.kernel, [&]() -> const KernelDef& { return find_kernel(spec.kernel); });
  for (const auto& source : spec.inputs) plan.inputs.push_back(source->spec());
  plan.output = check_inputs(*plan.kernel, plan.inputs, spec.params);
  // The kernel's own hook fails as the kernel's (no flag named), before the tile is looked at.
  const Shape space = iteration_shape_of(*plan.kernel, plan.inputs, plan.output);
  if (spec.tile) {
    plan.grid = about(JobField::tile, extents_text(*spec.tile), [&] { return detail::tile_grid_over(*plan.kernel, space, *spec.tile); });
  } else {
    if (!space.empty()) {
      throw SpecError(JobField::tile, "",
                      Error(Errc::usage, fmt::format("is required: {} runs over a {}-D space {} (give extents for its last axes, "
                                                     "like {})", plan.kernel->name, space.size(), format_shape(space),
                                                     space.size() == 1 ? "4" : "4,4")));
    }
    plan.grid = detail::tile_grid_over(*plan.kernel, space, Shape{});
  }
  return plan;
}

namespace {

// run_job from its plan on; `t_start` is when the job began (its report's wall_s and load_s
// count from there, planning included).
JobReport run_planned(const JobSpec& spec, const JobPlan& plan, Pool* pool, Clock::time_point t_start) {
  // The job's cancel flag stops every wait of this thread, starting a pool's workers included.
  const CancelScope cancellable(spec.cancel);
  OutputTarget& output = *spec.output;
  about(JobField::output, output.text(), [&] { output.check(spec.force); });
  const Backing& backing = spec.backing;
  if (!backing.is_shm() && ::access(backing.directory().c_str(), W_OK | X_OK) != 0) {
    throw SpecError(JobField::backing, backing.spec(),
                    Error(Errc::bad_input, fmt::format("cannot create segments there: {}", std::strerror(errno))));
  }
  // Leftovers of runs that were killed, swept when a runner starts: a warm pool's caller swept
  // when it started the pool (a sweep reads the whole store: not once per job).
  if (pool == nullptr) (void)collect_garbage(backing);

  const Mode mode = pool != nullptr ? pool->mode() : spec.mode;
  const ArrayPlacement placement = pool != nullptr ? pool->placement() : ArrayPlacement(mode, backing);
  JobRequest job;
  job.kernel = spec.kernel;
  job.tile = spec.tile.value_or(Shape{});
  job.params = spec.params;
  job.tiles = spec.tiles;
  job.progress = spec.progress;
  job.cancel = spec.cancel;
  job.check_regions = spec.check_regions;
  // A source given twice (the Python module's `add(x, x)`) is opened once: one array, copied
  // once where its mode copies it (before: twice, and counted twice).
  for (auto it = spec.inputs.begin(); it != spec.inputs.end(); ++it) {
    const auto first = std::find(spec.inputs.begin(), it, *it);
    job.inputs.push_back(first != it ? job.inputs[static_cast<std::size_t>(first - spec.inputs.begin())] : (*it)->open(placement));
  }
  output.set_inputs(job.inputs);
  job.output = about(JobField::output, output.text(), [&] { return output.create(plan.output, placement); });
  const detail::PreparedJob prepared = detail::prepare_planned(job, *plan.kernel, plan.output, plan.grid);

  JobReport report;
  report.mode = mode;
  report.kernel = spec.kernel;
  report.tile = job.tile;
  report.shape = plan.inputs.front().shape;
  report.load_s = seconds_since(t_start);

  JobStats stats;
  if (pool != nullptr) {
    stats = detail::run_prepared(*pool, job, prepared);
    report.workers = pool->worker_count();
    report.spawn_s = 0;  // a warm pool started before this job
  } else {
    // Memory is measured only when it is reported: walking smaps costs time.
    const PoolOptions options{.workers = spec.workers, .mode = mode, .backing = backing, .sample_memory = spec.measure_memory,
                              .tile_timeout = spec.tile_timeout, .dispatch = spec.dispatch};
    const detail::StagedJob staged{job, prepared};
    Pool own = detail::start_pool(options, &staged);
    stats = detail::run_prepared(own, job, prepared);
    report.workers = own.worker_count();
    report.spawn_s = own.spawn_seconds();  // after the job: fork mode forks its workers inside it
  }
  if (job.progress) job.progress(stats.tiles, stats.tiles);
  // Exit 0 only when every input is what the job started with, from start to end.
  for (const auto& source : spec.inputs) source->check_unchanged();

  report.tiles = stats.tiles;
  report.compute_s = stats.compute_s;
  report.retries = stats.retries;
  report.partials = std::move(stats.partials);
  if (spec.measure_memory) report.peak_pss_bytes = std::max(stats.peak_pss_bytes, pss_bytes(::getpid()));

  const auto t_write = Clock::now();
  throw_if_interrupted();  // a signal during the job's last moments: nothing is published
  publish(output, spec.force);
  report.write_s = seconds_since(t_write);
  report.bytes_copied = stats.bytes_copied + output.bytes_copied();
  for (auto it = spec.inputs.begin(); it != spec.inputs.end(); ++it) {
    if (std::find(spec.inputs.begin(), it, *it) == it) report.bytes_copied += (*it)->bytes_copied();
  }
  report.result = output.result();
  report.wall_s = seconds_since(t_start);
  return report;
}

}  // namespace

JobReport run_job(const JobSpec& spec, Pool* pool) {
  const auto t_start = Clock::now();
  const CancelScope cancellable(spec.cancel);  // a plugin that hangs while it loads included
  // Everything a caller can get wrong is checked before any segment or process exists.
  return run_planned(spec, plan_job(spec), pool, t_start);
}

JobReport run_job(const JobSpec& spec, const JobPlan& plan, Pool* pool) { return run_planned(spec, plan, pool, Clock::now()); }

nlohmann::ordered_json report_json_object(const JobReport& r) {
  nlohmann::ordered_json j;
  j["mode"] = std::string(mode_name(r.mode));
  j["kernel"] = r.kernel;
  j["workers"] = r.workers;
  j["tiles"] = r.tiles;
  j["shape"] = r.shape;
  j["tile"] = r.tile;
  j["wall_s"] = r.wall_s;
  j["phases"] = {{"load_s", r.load_s}, {"spawn_s", r.spawn_s}, {"compute_s", r.compute_s}, {"write_s", r.write_s}};
  j["bytes_copied"] = r.bytes_copied;
  j["peak_pss_bytes"] = r.peak_pss_bytes;
  j["retries"] = r.retries;
  return j;
}

std::string report_json(const JobReport& r) { return report_json_object(r).dump(); }

}  // namespace tilepool
