#pragma once
// The tilepool command line: one function per verb. Each throws tilepool::Error; main()
// alone turns errors into the one-line message and the exit status.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tilepool/runner/pool.hpp"

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

/// Removes job segments whose owner process is gone; returns their names.
std::vector<std::string> collect_garbage(const Backing& backing);

}  // namespace tilepool::cli
