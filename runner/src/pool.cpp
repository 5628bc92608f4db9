// Pool: the public face of the job runner; mode names; Ctrl-C; the inline reference.
#include "tilepool/runner/pool.hpp"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <thread>

#include "detail/job_runner.hpp"
#include "detail/or_list.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {

std::string_view mode_name(Mode mode) noexcept { return detail::launcher_row(mode).name; }

std::vector<std::string_view> mode_names() {
  std::vector<std::string_view> names;
  for (const detail::LauncherRow& row : detail::launcher_table()) names.push_back(row.name);
  return names;
}

Mode parse_mode(std::string_view text) {
  for (const detail::LauncherRow& row : detail::launcher_table()) {
    if (row.name == text) return row.mode;
  }
  const std::vector<std::string_view> names = mode_names();
  // The caller puts the text in front ("--mode bogus: ", "mode='bogus': ").
  throw Error(Errc::usage, fmt::format("not a mode (expected {} or {})", fmt::join(names.begin(), names.end() - 1, ", "), names.back()));
}

Pool::Pool(std::unique_ptr<detail::JobRunner> impl) : impl_(std::move(impl)) {}
Pool::Pool(Pool&&) noexcept = default;
Pool& Pool::operator=(Pool&&) noexcept = default;
Pool::~Pool() = default;

namespace detail {

void check_tile_timeout(Mode mode, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0 || launcher_row(mode).stops_stuck_workers) return;
  std::vector<std::string_view> can;  // the modes that can, from the table: "share, fork or copy"
  for (const LauncherRow& row : launcher_table()) {
    if (row.stops_stuck_workers) can.push_back(row.name);
  }
  throw SpecError(JobField::tile_timeout, fmt::format("{}", static_cast<double>(timeout.count()) / 1000),
                  Error(Errc::usage, fmt::format("{} mode cannot stop a worker that holds a tile too long (use a mode with "
                                                 "worker processes: {})",
                                                 launcher_row(mode).name, or_list(can))));
}

}  // namespace detail

Pool Pool::start(const PoolOptions& options, const JobRequest* first_job) {
  if (first_job == nullptr) return detail::start_pool(options, nullptr);
  const detail::PreparedJob prepared = detail::prepare(*first_job);
  const detail::StagedJob staged{*first_job, prepared};
  return detail::start_pool(options, &staged);
}

Pool detail::start_pool(const PoolOptions& options, const StagedJob* first_job) {
  PoolOptions o = options;
  if (o.workers <= 0) o.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.workers > kMaxWorkers) throw Error(Errc::usage, fmt::format("{} workers; at most {}", o.workers, kMaxWorkers));
  detail::check_tile_timeout(o.mode, o.tile_timeout);
  o.dispatch.check();
  try {
    return Pool(std::make_unique<detail::JobRunner>(o, first_job));
  } catch (...) {
    // Whatever failed while the user's signal was pending (a spawn cut short by it, say)
    // failed because of it: report the signal.
    throw_if_interrupted();
    throw;
  }
}

JobStats Pool::run(const JobRequest& job) {
  try {
    return impl_->run(job);
  } catch (...) {
    throw_if_interrupted();
    throw;
  }
}

JobStats detail::run_prepared(Pool& pool, const JobRequest& job, const PreparedJob& prepared) {
  try {
    return pool.impl_->run(job, prepared);
  } catch (...) {
    throw_if_interrupted();
    throw;
  }
}
Mode Pool::mode() const noexcept { return impl_->launcher().mode(); }
int Pool::worker_count() const noexcept { return impl_->launcher().worker_count(); }
double Pool::spawn_seconds() const noexcept { return impl_->launcher().spawn_seconds(); }
std::vector<pid_t> Pool::worker_pids() const { return impl_->launcher().worker_pids(); }
ArrayPlacement Pool::placement() const { return ArrayPlacement(mode(), impl_->options().backing); }

ArraySpec output_spec(const JobRequest& job) { return check_inputs(find_kernel(job.kernel), detail::input_specs(job), job.params); }

TileGrid tile_grid(const JobRequest& job) {
  const std::vector<ArraySpec> specs = detail::input_specs(job);
  const KernelDef& kernel = find_kernel(job.kernel);
  return detail::tile_grid_of(kernel, specs, check_inputs(kernel, specs, job.params), job.tile);
}

TileGrid tile_grid(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output, const Shape& tile) {
  return detail::tile_grid_of(kernel, inputs, output, tile);
}

void run_inline(const JobRequest& job) {
  const detail::PreparedJob prepared = detail::prepare(job);
  std::vector<AnyArray> inputs;
  for (const JobArray& in : job.inputs) inputs.push_back(in.array);
  auto bound = prepared.kernel->bind(inputs, job.output.array, check_params(*prepared.kernel, job.params));
  std::vector<TilePartial> partials(static_cast<std::size_t>(prepared.tile_count));
  for (std::int64_t t = 0; t < prepared.tile_count; ++t) {
    bound->run_tile(prepared.grid.box(prepared.first_tile + t), partials[static_cast<std::size_t>(t)]);
  }
  if (prepared.kernel->reduction != Reduction::none) store_total(sum_in_tile_order(partials), job.output.array);
}

}  // namespace tilepool
