#pragma once
// The tilepool command line: one function per verb. Each throws tilepool::Error; main()
// alone turns errors into the one-line message and the exit status.

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/runner/job.hpp"
#include "tilepool/runner/store.hpp"
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
  bool check_regions = false;
  bool progress = false;     // --progress: always draw the bar
  bool no_progress = false;  // --no-progress: never (default: when stderr is a terminal)
  double tile_timeout_s = 0;
  std::vector<std::string> plugins;  // --plugin FILE.so, loaded before anything else
};

/// What a run measured, as `--json` prints it and `demo` tabulates it.
using RunReport = JobReport;

/// The job that `tilepool run`'s options describe: every flag parsed (FILE.npy / shm:NAME and
/// the registered formats opened as sources and targets, but nothing read yet). Throws
/// Error(usage) naming the flag. Plugins are loaded by run_job, before the kernel is looked up.
JobSpec job_spec(const RunOptions& options);
/// `error` in the command line's words: a SpecError gets the flag its field came from
/// ("--tile 0,8: ..."), an existing output the remedy ("pass --force to overwrite").
/// `backing_spec` is the job's --backing (its store's remedy differs).
Error for_command_line(const SpecError& error, std::string_view backing_spec);
/// A full segment store, with the remedy the command line offers: "use --backing file:DIR"
/// for /dev/shm, another directory when `backing_spec` is file:DIR already. Not for a file
/// output's filesystem: --backing does not move file outputs.
Error with_store_remedy(const Error& error, std::string_view backing_spec);
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
/// Runs a job as `tilepool run` does and reports what it measured; errors are in the command
/// line's words (for_command_line).
RunReport run_job(const RunOptions& options);
/// Raises the descriptor limit to what a job with `inputs` and `plugins` holds open besides its
/// workers' pipes, or throws Error(usage) saying how many `whose` files need ("the demo's").
void reserve_job_descriptors(std::size_t inputs, std::size_t plugins, std::string_view whose);

void add_segment_commands(CLI::App& app);  // put, get, ls, rm, gc
void add_kernels_command(CLI::App& app);
/// Loads each --plugin file (load_plugin): a refused one is a one-line Error, exit 2.
void load_plugins(const std::vector<std::string>& paths);
void add_demo_command(CLI::App& app);

/// The one line for a command line CLI11 refused: an unknown subcommand, option or argument
/// named as such (CLI11 would first complain of a missing required one), else CLI11's text;
/// with "(see PROGRAM [SUBCOMMAND] --help)".
std::string parse_error_message(CLI::App& app, const CLI::ParseError& error, std::string_view program);
/// The names of `app`'s subcommands, in the order they were added.
std::vector<std::string> subcommand_names(const CLI::App& app);

/// The exit status for an error: 2 usage or bad input (and a full store, found before any
/// work), 128 + signal when interrupted, 1 when the job failed.
int exit_status(const Error& e);
/// Ends the process with `status` once a command is over, its output flushed, without running
/// static destructors: a plugin's could still abort and turn a published result into exit 134
/// (tilepool and tilepool-mpi alike). Under AddressSanitizer, checks for leaks first, as exit()
/// would have.
[[noreturn]] void end_process(int status);
/// Until end_process: a call of exit() or std::terminate() in this process (a plugin's code in
/// the runner: output_spec, iteration_shape, input_region, a thread it started) is one line
/// "`program`: error: ...", removes this process's job segments in /dev/shm and exits 1
/// (before: exit(0) from output_spec ended the run with status 0 and no output). A threads-mode
/// job's own words (naming the kernel) take precedence while it runs. Call once, first thing.
void guard_command(const char* program);

}  // namespace tilepool::cli
