// tilepool run: load inputs once, run one job on a pool, write the output.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.hpp"
#include "flag_errors.hpp"
#include "numeric_flags.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool::cli {
namespace {

using Clock = std::chrono::steady_clock;

/// The flag a field of a JobSpec comes from.
std::string_view flag_of(JobField field) noexcept {
  switch (field) {
    case JobField::kernel: return "--kernel";
    case JobField::input: return "--input";
    case JobField::output: return "--output";
    case JobField::tile: return "--tile";
    case JobField::params: return "--param";
    case JobField::workers: return "--workers";
    case JobField::mode: return "--mode";
    case JobField::backing: return "--backing";
    case JobField::tile_timeout: return "--tile-timeout";
    case JobField::plugin: return "--plugin";
    case JobField::none: break;
  }
  return "";
}

// " (add_scalar accepts: value (number, required))" when the kernel can be found (with the
// job's plugins loaded), for a message about --param; empty otherwise.
std::string accepted_keys_note(const RunOptions& o) {
  try {
    load_plugins(o.plugins);
    return fmt::format(" ({})", accepted_params(find_kernel(o.kernel)));
  } catch (const Error&) {
    return {};  // the unknown kernel or refused plugin is reported on its own once the job starts
  }
}

}  // namespace

Error with_store_remedy(const Error& e, std::string_view backing_spec) {
  if (backing_spec.starts_with("file:")) {
    return Error(e.code(), fmt::format("{} (free space there, or give --backing file:DIR a filesystem with more room)", e.what()));
  }
  return Error(e.code(), fmt::format("{} (for a larger store, use --backing file:DIR)", e.what()));
}

Error for_command_line(const SpecError& e, std::string_view backing_spec) {
  // The user's signal is about the run, not about the flag whose step it stopped.
  if (e.code() == Errc::interrupted) return Error(e.code(), e.what());
  const std::string_view flag = flag_of(e.field());
  // A full store of segments has a remedy; a file output's full filesystem has not (it is
  // where the user asked for the file).
  if (e.code() == Errc::no_space && !(e.field() == JobField::output && !e.value().starts_with("shm:"))) {
    const Error flagged = for_command_line(SpecError(e.field(), e.value(), Error(Errc::bad_input, e.what())), backing_spec);
    return with_store_remedy(Error(Errc::no_space, flagged.what()), backing_spec);
  }
  // A name that exists is described by the library ("out.npy: already exists"); the remedy is
  // the command line's.
  if (e.code() == Errc::exists) return Error(e.code(), fmt::format("{} (pass --force to overwrite)", e.what()));
  // Messages about an input or output, and about a kernel or plugin, already name it.
  switch (e.field()) {
    case JobField::input:
    case JobField::output:
      if (e.value().empty() || std::string_view(e.what()).starts_with(e.value())) {
        return Error(e.code(), fmt::format("{} {}", flag, e.what()));
      }
      return Error(e.code(), fmt::format("{} {}: {}", flag, e.value(), e.what()));
    case JobField::kernel:
    case JobField::plugin:
    case JobField::none: return Error(e.code(), e.what());
    default: break;
  }
  if (e.value().empty()) return Error(e.code(), fmt::format("{} {}", flag, e.what()));
  return Error(e.code(), fmt::format("{} {}: {}", flag, e.value(), e.what()));
}

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

JobSpec job_spec(const RunOptions& o) {
  JobSpec spec;
  spec.kernel = o.kernel;
  spec.mode = for_flag("--mode", o.mode, parse_mode);
  spec.backing = for_flag("--backing", o.backing, Backing::parse);
  // No --tile: the kernel's iteration space must be 0-d (run_job checks it once the inputs are known).
  if (o.tile) spec.tile = for_flag("--tile", *o.tile, TileGrid::parse_extents);
  spec.workers = o.workers;
  for (const std::string& item : o.params) {
    const Params one = for_flag("--param", item, [](std::string_view i) { return Params::parse(std::vector{std::string(i)}); });
    for (const auto& [key, value] : one.values()) {
      try {
        spec.params.add(key, value);  // a repeated key is refused
      } catch (const Error& e) {
        throw Error(e.code(), fmt::format("--param: {}{}", e.what(), accepted_keys_note(o)));
      }
    }
  }
  if (o.inputs.empty()) throw Error(Errc::usage, fmt::format("--input is required ({})", array_forms()));
  try {
    for (const auto& in : o.inputs) spec.inputs.push_back(open_source(in, spec.backing));
    spec.output = open_target(o.output, spec.backing);
  } catch (const SpecError& e) {
    throw for_command_line(e, o.backing);
  }
  for (const auto& p : o.plugins) spec.plugins.emplace_back(p);
  // Rounded up: a timeout under a millisecond is one millisecond, not none.
  spec.tile_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(o.tile_timeout_s * 1000)));
  spec.force = o.force;
  spec.check_regions = o.check_regions;
  // Memory is measured only when it is reported: walking smaps costs time.
  spec.measure_memory = o.json || o.measure_memory;
  return spec;
}

void reserve_job_descriptors(std::size_t inputs, std::size_t plugins, std::string_view whose) {
  // What the runner holds open at once besides its workers' pipes (measured: 7 with one input,
  // 8 with two; one spare). Below that, whichever open came first failed with "Too many open
  // files" (exit 1), or a segment got no owner start time.
  raise_descriptor_limit(7 + inputs + plugins,
                         fmt::format("{} files (stdin, stdout, stderr, {} input{}, {}the output, its control block, and one "
                                     "to read /proc)",
                                     whose, inputs, inputs == 1 ? "" : "s",
                                     plugins == 0 ? "" : fmt::format("{} plugin{}, ", plugins, plugins == 1 ? "" : "s")));
}

RunReport run_job(const RunOptions& o) {
  reserve_job_descriptors(o.inputs.size(), o.plugins.size(), "the runner's own");  // before the first file is opened
  try {
    JobSpec spec = job_spec(o);
    std::optional<ProgressBar> bar;
    if (progress_wanted(o)) {
      bar.emplace();
      spec.progress = [&bar](std::int64_t done, std::int64_t total) { bar->update(done, total); };
    }
    return tilepool::run_job(spec);
  } catch (const SpecError& e) {
    throw for_command_line(e, o.backing);
  } catch (const Error& e) {
    if (e.code() == Errc::no_space) throw with_store_remedy(e, o.backing);  // the control block, a converted input
    throw;
  }
}

void add_run_options(CLI::App* run, RunOptions& o) {
  run->add_option("--kernel,-k", o.kernel, "kernel name (see tilepool kernels)")->required();
  run->add_option("--plugin", o.plugins, "a kernel plugin FILE.so to load first (repeatable)");
  run->add_option("--input,-i", o.inputs, array_forms() + " (repeat for each input)")->required();
  run->add_option("--output,-o", o.output, array_forms())->required();
  run->add_option("--tile,-t", o.tile, "tile extents for the last k axes, e.g. 4,4 (not needed over a 0-d array)");
  run->add_option("--workers,-w", o.workers, "worker count (default: number of cores)")->check(worker_count_range());
  const std::vector<std::string_view> modes = mode_names();
  run->add_option("--mode,-m", o.mode,
                  fmt::format("{} (default), {} or {}", modes.front(), fmt::join(modes.begin() + 1, modes.end() - 1, ", "), modes.back()));
  run->add_option("--param,-p", o.params, "KEY=VALUE for the kernel (repeatable)");
  run->add_option("--backing", o.backing, "shm (default) or file:DIR");
  run->add_option("--tile-timeout", o.tile_timeout_s, "seconds a worker may hold one tile before it is killed and the tile retried")
      ->check(tile_timeout_range());
  run->add_flag("--json", o.json, "print one JSON object with the run's measurements");
  run->add_flag("--force", o.force, "replace an existing output");
  run->add_flag("--check-regions", o.check_regions,
                "run each tile on copies of only the regions its kernel declares, so a read outside them fails the job "
                "(copy mode always does; costs a copy per tile)");
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
