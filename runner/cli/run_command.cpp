// tilepool run: load inputs once, run one job on a pool, write the output.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include <fmt/format.h>

#include "commands.hpp"
#include "flag_errors.hpp"
#include "numeric_flags.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/runner/memory_stats.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

Location parse_location(const std::string& s, const char* flag) {
  if (s.starts_with("shm:")) {
    const std::string name = s.substr(4);
    validate_segment_name(name);
    return Location{true, name};
  }
  if (s.empty()) throw Error(Errc::usage, std::string(flag) + " needs FILE.npy or shm:NAME");
  return Location{false, s};
}

namespace {

/// A job's arrays and the handles that own them: destroying it removes every job-private
/// segment and an output that was not published.
struct RunArrays {
  std::vector<ArraySegment> segments;
  std::optional<ArraySegment> output;
};

JobArray load_input(const Location& loc, const ArrayPlacement& placement, const Backing& backing, RunArrays& arrays) {
  if (loc.is_segment) {
    // Read-only: a segment the user may only read (mode 0400, a read-only mount) is an input
    // too, and a kernel that writes into its input faults instead of changing the user's data.
    arrays.segments.push_back(ArraySegment::attach(loc.text, backing, MapOptions{.populate = false, .read_only = true}));
    return JobArray::of(arrays.segments.back());
  }
  return placement.load_npy(loc.text, ArrayRole::input);
}

/// The output, built where no reader can see it and published onto the user's name only after
/// the job succeeded: a segment under a job-owned name ("tilepool-<pid>-...-out", which `gc`
/// collects if this process dies), or a file with no name yet in the output's directory
/// (O_TMPFILE: it vanishes with this process) that every mode's workers write in place.
JobArray make_output(const Location& loc, const ArraySpec& spec, const Backing& backing, RunArrays& arrays) {
  if (loc.is_segment) {
    arrays.output = ArraySegment::create(job_segment_name("out"), spec.dtype, spec.shape, backing, MapOptions{.populate = false});
  } else {
    arrays.output = ArraySegment::create_npy_file(loc.text, spec.dtype, spec.shape);
  }
  return JobArray::of(*arrays.output);
}

}  // namespace

void check_output(const Location& out, const Backing& backing, bool force) {
  namespace fs = std::filesystem;
  if (out.is_segment) {
    if (!force && segment_exists(out.text, backing)) {
      throw Error(Errc::exists, fmt::format("segment '{}' already exists (pass --force to replace it, or tilepool rm {})",
                                            out.text, out.text));
    }
    const fs::path dir = backing.directory();
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      throw Error(Errc::bad_input, fmt::format("--output shm:{}: cannot create segments in {}: {}", out.text, dir.string(),
                                               std::strerror(errno)));
    }
    return;
  }
  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out.text, ec);
  if (fs::exists(st)) {
    if (fs::is_directory(fs::status(out.text, ec))) {
      throw Error(Errc::bad_input, fmt::format("--output {}: is a directory (expected a FILE.npy path)", out.text));
    }
    if (!force) throw Error(Errc::exists, fmt::format("{}: already exists (pass --force to overwrite)", out.text));
    // --force replaces a file (or a symlink: the link itself, not its target), never a device,
    // FIFO or socket that happens to be under the name.
    if (!fs::is_regular_file(st) && !fs::is_symlink(st)) {
      throw Error(Errc::bad_input, fmt::format("--output {}: exists and is not a regular file (a device, FIFO or socket); "
                                               "refusing to replace it", escape_for_message(out.text)));
    }
  }
  fs::path dir = fs::path(out.text).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) {
    throw Error(Errc::bad_input, fmt::format("--output {}: directory {} does not exist", out.text, dir.string()));
  }
  // The output file is made in that directory, with no name until the job succeeded.
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw Error(Errc::bad_input, fmt::format("--output {}: cannot write in directory {}: {}", out.text, dir.string(),
                                             std::strerror(errno)));
  }
  (void)remove_stale_file_temporaries(dir);  // what runs killed there left (no O_TMPFILE, or mid-publish)
}

namespace {

/// Publishes the finished output onto the name the user asked for in one step (rename(2) of a
/// segment, linkat(2) of a file), replacing an old one only with --force (without it, a name
/// that appeared during the job is kept and the job fails). A segment is checked first to be
/// still the object the job built.
void publish_output(ArraySegment& built, const Location& loc, bool force) {
  try {
    if (loc.is_segment) {
      built.segment().publish(loc.text, force);
    } else {
      built.publish_npy_file(loc.text, force);
    }
  } catch (const Error& e) {
    // The work is done but its result cannot be delivered: the job failed (exit 1). The
    // job-owned segment or unnamed file goes with its handle.
    throw Error(e.code() == Errc::exists ? Errc::exists : Errc::job_failed,
                fmt::format("--output {}{}: the result was not published: {}", loc.is_segment ? "shm:" : "",
                            escape_for_message(loc.text), e.what()));
  }
}

/// The dtype and shape of each of the job's inputs.
std::vector<ArraySpec> input_specs_of(const JobRequest& job) {
  std::vector<ArraySpec> specs;
  for (const JobArray& in : job.inputs) specs.push_back(ArraySpec{in.array.dtype(), in.array.shape()});
  return specs;
}

}  // namespace

void ProgressBar::update(std::int64_t done, std::int64_t total) {
    const auto now = Clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : 0;
    constexpr int kWidth = 30;
    const int filled = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
    std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld tiles  %.0f tiles/s  ETA %.1fs ", filled,
                 "##############################", kWidth - filled, "", static_cast<long long>(done),
                 static_cast<long long>(total), rate, eta);
    shown_ = true;
}

ProgressBar::~ProgressBar() {
  if (shown_) std::fputs("\n", stderr);
}

bool progress_wanted(const RunOptions& o) { return !o.no_progress && (o.progress || ::isatty(STDERR_FILENO) != 0); }

RunSettings check_run_options(const RunOptions& o) {
  RunSettings s;
  s.mode = for_flag("--mode", o.mode, parse_mode);
  s.backing = for_flag("--backing", o.backing, Backing::parse);
  (void)find_kernel(o.kernel);
  // No --tile: the kernel's iteration space must be 0-d (checked once the inputs are known).
  s.tile = o.tile ? for_flag("--tile", *o.tile, TileGrid::parse_extents) : Shape{};
  if (o.workers < 0 || o.workers > kMaxWorkers) {
    throw Error(Errc::usage, fmt::format("--workers {}: expected 1 to {}", o.workers, kMaxWorkers));
  }
  if (s.mode == Mode::threads && o.tile_timeout_s > 0) {
    throw Error(Errc::usage, "--tile-timeout: threads mode cannot stop a thread that holds a tile too long (use --mode share, fork or copy)");
  }
  for (const std::string& item : o.params) {
    const Params one = for_flag("--param", item, [](std::string_view i) { return Params::parse(std::vector{std::string(i)}); });
    for (const auto& [key, value] : one.values()) s.params.set(key, value);
  }
  if (o.inputs.empty()) throw Error(Errc::usage, "--input is required (FILE.npy or shm:NAME)");
  for (const auto& in : o.inputs) s.inputs.push_back(parse_location(in, "--input"));
  s.output = parse_location(o.output, "--output");
  return s;
}

TileGrid check_tile_flag(const RunOptions& o, const KernelDef& kernel, std::span<const ArraySpec> inputs,
                         const ArraySpec& output, const Shape& tile) {
  if (o.tile) return for_flag("--tile", *o.tile, [&](auto) { return tile_grid(kernel, inputs, output, tile); });
  const Shape space = kernel.iteration_shape(inputs, output);
  if (!space.empty()) {
    throw Error(Errc::usage, fmt::format("--tile is required: {} runs over a {}-D space {} (give extents for its last axes, "
                                         "like --tile {})", kernel.name, space.size(), format_shape(space),
                                         space.size() == 1 ? "4" : "4,4"));
  }
  return tile_grid(kernel, inputs, output, tile);
}

RunReport run_job(const RunOptions& o) {
  const auto t_start = Clock::now();
  const bool measure_memory = o.json || o.measure_memory;
  // Everything a user can get wrong is checked before any segment or process exists.
  load_plugins(o.plugins);
  const RunSettings settings = check_run_options(o);
  const Mode mode = settings.mode;
  const Backing& backing = settings.backing;
  const Shape& tile = settings.tile;
  const Location& out_loc = settings.output;
  check_output(out_loc, backing, o.force);
  if (!backing.is_shm() && ::access(backing.directory().c_str(), W_OK | X_OK) != 0) {
    throw Error(Errc::bad_input, fmt::format("--backing {}: cannot create segments there: {}", backing.spec(), std::strerror(errno)));
  }
  collect_garbage(backing);  // leftovers of runs that were killed

  RunReport report;
  report.mode = mode;
  report.kernel = o.kernel;
  report.tile = tile;

  RunArrays arrays;
  JobRequest job;
  job.kernel = o.kernel;
  job.tile = tile;
  job.params = settings.params;
  const ArrayPlacement placement(mode, backing);
  for (const Location& loc : settings.inputs) job.inputs.push_back(load_input(loc, placement, backing, arrays));
  const ArraySpec spec = output_spec(job);
  (void)check_tile_flag(o, find_kernel(o.kernel), input_specs_of(job), spec, tile);
  job.output = make_output(out_loc, spec, backing, arrays);
  report.load_s = seconds_since(t_start);

  std::optional<ProgressBar> bar;
  if (progress_wanted(o)) {
    bar.emplace();
    job.progress = [&bar](std::int64_t done, std::int64_t total) { bar->update(done, total); };
  }
  JobStats stats;
  {
    // Memory is measured only when it is reported: walking smaps costs time.
    const PoolOptions pool_options{.workers = o.workers, .mode = mode, .backing = backing, .sample_memory = measure_memory,
                                   .tile_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.tile_timeout_s * 1000))};
    Pool pool = Pool::start(pool_options, &job);
    report.workers = pool.worker_count();
    stats = pool.run(job);
    // After the job: fork mode forks its workers inside run().
    report.spawn_s = pool.spawn_seconds();
    if (bar) bar->update(stats.tiles, stats.tiles);
  }
  bar.reset();
  report.tiles = stats.tiles;
  report.shape = job.inputs[0].array.shape();
  report.compute_s = stats.compute_s;
  report.retries = stats.retries;
  report.bytes_copied = stats.bytes_copied;
  if (measure_memory) report.peak_pss_bytes = std::max(stats.peak_pss_bytes, pss_bytes(::getpid()));

  const auto t_write = Clock::now();
  throw_if_interrupted();  // a signal while the pool stopped: nothing is published after Ctrl-C
  publish_output(*arrays.output, out_loc, o.force);  // shm:NAME lives until `tilepool rm`
  report.write_s = seconds_since(t_write);
  report.wall_s = seconds_since(t_start);
  return report;
}

std::string report_json(const RunReport& r) {
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
  return j.dump();
}

void add_run_options(CLI::App* run, RunOptions& o) {
  run->add_option("--kernel,-k", o.kernel, "kernel name (see tilepool kernels)")->required();
  run->add_option("--plugin", o.plugins, "a kernel plugin FILE.so to load first (repeatable)");
  run->add_option("--input,-i", o.inputs, "FILE.npy or shm:NAME (repeat for each input)")->required();
  run->add_option("--output,-o", o.output, "FILE.npy or shm:NAME")->required();
  run->add_option("--tile,-t", o.tile, "tile extents for the last k axes, e.g. 4,4 (not needed over a 0-d array)");
  run->add_option("--workers,-w", o.workers, "worker count (default: number of cores)")->check(worker_count_range());
  run->add_option("--mode,-m", o.mode, "share (default), fork, copy or threads");
  run->add_option("--param,-p", o.params, "KEY=VALUE for the kernel (repeatable)");
  run->add_option("--backing", o.backing, "shm (default) or file:DIR");
  run->add_option("--tile-timeout", o.tile_timeout_s, "seconds a worker may hold one tile before it is killed and the tile retried")
      ->check(tile_timeout_range());
  run->add_flag("--json", o.json, "print one JSON object with the run's measurements");
  run->add_flag("--force", o.force, "replace an existing output");
  run->add_flag("--progress", o.progress, "draw a progress bar on stderr even when it is not a terminal");
  run->add_flag("--no-progress", o.no_progress, "no progress bar (default: one when stderr is a terminal)");
}

void add_run_command(CLI::App& app, RunOptions& o) {
  CLI::App* run = app.add_subcommand("run", "run a kernel over tiles of the inputs");
  add_run_options(run, o);
  run->callback([&o] {
    install_interrupt_handlers();
    const RunReport r = run_job(o);
    if (o.json) {
      std::printf("%s\n", report_json(r).c_str());
    } else {
      std::printf("%s: %lld tiles on %d %s workers in %.4f s (compute %.4f s)\n", r.kernel.c_str(),
                  static_cast<long long>(r.tiles), r.workers, std::string(mode_name(r.mode)).c_str(), r.wall_s,
                  r.compute_s);
    }
  });
}

}  // namespace tilepool::cli
