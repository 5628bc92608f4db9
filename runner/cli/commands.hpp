#pragma once
// The tilepool command line: one function per verb. Each throws tilepool::Error; main()
// alone turns errors into the one-line message and the exit status.

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool::cli {

/// `tilepool run` options, as parsed.
struct RunOptions {
  std::string kernel;
  std::vector<std::string> inputs;
  std::string output;
  std::optional<std::string> tile;  ///< absent: the iteration space must be 0-d (one tile)
  int workers = 0;
  std::string mode = "share";
  std::vector<std::string> params;
  std::string backing = "shm";
  bool json = false;
  /// Measure peak PSS (walks every process's page tables once, after the last tile): on with
  /// --json and in `demo`, which print it.
  bool measure_memory = false;
  bool force = false;
  bool progress = false;     // --progress: always draw the bar
  bool no_progress = false;  // --no-progress: never (default: when stderr is a terminal)
  double tile_timeout_s = 0;
  std::vector<std::string> plugins;  // --plugin FILE.so, loaded before anything else
};

/// What a run measured, as `--json` prints it and `demo` tabulates it.
struct RunReport {
  Mode mode = Mode::share;
  std::string kernel;
  int workers = 0;
  std::int64_t tiles = 0;
  Shape shape;
  Shape tile;
  double wall_s = 0, load_s = 0, spawn_s = 0, compute_s = 0, write_s = 0;
  std::uint64_t bytes_copied = 0;
  std::uint64_t peak_pss_bytes = 0;
  std::int64_t retries = 0;
};

/// Where an array comes from or goes: "FILE.npy" or "shm:NAME".
struct Location {
  bool is_segment = false;
  std::string text;  ///< the path, or the segment name
};
/// Parses "FILE.npy" or "shm:NAME" given to `flag`; throws Error(usage).
Location parse_location(const std::string& s, const char* flag);

/// The run options checked and parsed (everything that needs no file or segment).
struct RunSettings {
  Mode mode = Mode::share;
  Backing backing;
  Shape tile;  ///< empty without --tile
  Params params;
  std::vector<Location> inputs;
  Location output;
};
/// Checks the options a user can get wrong before anything is opened; throws Error(usage)
/// naming the flag. Plugins must be loaded first (--kernel may name a plugin's kernel).
RunSettings check_run_options(const RunOptions& options);
/// The tile grid for --tile (or its absence) over arrays of these specs; throws Error(usage)
/// naming --tile when it does not fit, or when it is missing and the space is not 0-d.
TileGrid check_tile_flag(const RunOptions& options, const KernelDef& kernel, std::span<const ArraySpec> inputs,
                         const ArraySpec& output, const Shape& tile);
/// Everything about the output that can be checked before any segment or process exists:
/// an existing name without --force (Error(exists)), a directory that is missing or not
/// writable (Error(bad_input)). Nothing is removed here: --force replaces the old output only
/// when the new one is published.
void check_output(const Location& out, const Backing& backing, bool force);
/// True if a progress bar should be drawn: --progress, or stderr is a terminal and no --no-progress.
bool progress_wanted(const RunOptions& options);

/// A one-line progress bar on stderr: tiles done, rate, ETA. Ends its line when destroyed.
class ProgressBar {
 public:
  ProgressBar() = default;
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar();
  /// Redraws (at most every 100 ms, and always at the end).
  void update(std::int64_t done, std::int64_t total);

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
  bool shown_ = false;
};

/// Adds the options of `tilepool run` (and of `tilepool-mpi run`) to a subcommand.
void add_run_options(CLI::App* run, RunOptions& options);
void add_run_command(CLI::App& app, RunOptions& options);
/// Runs a job as `tilepool run` does and reports what it measured.
RunReport run_job(const RunOptions& options);
/// Prints a report as one JSON object (the --json fields the README lists).
std::string report_json(const RunReport& report);

void add_segment_commands(CLI::App& app);  // put, get, ls, rm, gc
void add_kernels_command(CLI::App& app);
/// Loads each --plugin file (load_plugin): a refused one is a one-line Error, exit 2.
void load_plugins(const std::vector<std::string>& paths);
void add_demo_command(CLI::App& app);

/// The exit status for an error: 2 usage or bad input (and a full store, found before any
/// work), 128 + signal when interrupted, 1 when the job failed.
int exit_status(const Error& e);

/// Removes job segments whose owner process is gone; returns their names.
std::vector<std::string> collect_garbage(const Backing& backing);

}  // namespace tilepool::cli
