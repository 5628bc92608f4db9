#pragma once
/// @file
/// The job layer: one public call, run_job(JobSpec) -> JobReport, that every front end (the
/// `tilepool` command, `tilepool-mpi`, the Python module) uses. A job's life — resolve its
/// sources, prepare it once (kernel, checks, grid), place its arrays for the mode, run and
/// supervise it, publish its output — is written here once; a front end builds a JobSpec and
/// presents the report and the errors in its own idiom.
///
/// Where an input comes from is an ArraySource; where the output goes is an OutputTarget.
/// A new format is one source (and target) and one registration (register_array_format).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/runner/pool.hpp"

namespace tilepool {

/// Which part of a JobSpec an error is about, so a front end can name it in its own words
/// (the CLI names the flag: `--tile 0,8: ...`, Python the keyword).
enum class JobField { none, kernel, input, output, tile, params, workers, mode, backing, tile_timeout, plugin };

/// An Error about one field of a JobSpec. `value` is the field as the caller gave it (the
/// tile "4,4", the input's text), for the message a front end builds.
class SpecError : public Error {
 public:
  SpecError(JobField field, std::string value, const Error& cause)
      : Error(cause.code(), cause.what()), field_(field), value_(std::move(value)) {}
  [[nodiscard]] JobField field() const noexcept { return field_; }
  [[nodiscard]] const std::string& value() const noexcept { return value_; }

 private:
  JobField field_;
  std::string value_;
};

/// Where one input of a job comes from: an `.npy` file, a `shm:` segment, a caller's memory,
/// or any registered format. A source is resolved in the runner's process only; what workers
/// get is the JobArray it opens (a segment or file they attach, or memory they inherit).
/// Not thread-safe; one job at a time.
class ArraySource {
 public:
  virtual ~ArraySource() = default;
  /// What the user gave ("a.npy", "shm:grid", "<array>"): for messages.
  [[nodiscard]] virtual std::string text() const = 0;
  /// The array's dtype and shape, reading no more than its header. Throws Error(bad_input)
  /// naming the source when it is missing or malformed.
  [[nodiscard]] virtual ArraySpec spec() = 0;
  /// The whole array, placed for `placement`'s mode: mapped in place where the bytes can be
  /// (an `.npy` needing no conversion, a segment: read-only, pinned by identity), otherwise
  /// converted or copied into an array that `placement` makes. The returned array keeps its
  /// memory alive. Throws Error(bad_input) or Error(no_space).
  [[nodiscard]] virtual JobArray open(const ArrayPlacement& placement) = 0;
  /// Only the byte ranges `ranges` of the data (for one node of a distributed job), into a
  /// full-size array that reserves only them; adds the bytes it read from storage to
  /// `bytes_read`. Default: open() (the whole array).
  [[nodiscard]] virtual JobArray open_ranges(const ArrayPlacement& placement, std::span<const ByteRange> ranges,
                                             std::uint64_t& bytes_read);
  /// True if the source holds the data only in this process's memory (a caller's array): a
  /// distributed job must ship it to the other nodes.
  [[nodiscard]] virtual bool local_only() const noexcept { return false; }
  /// Throws Error(job_failed) naming the source if the data it opened changed while the job
  /// ran (rewritten in place, replaced, truncated, grown). Called once, after the last tile.
  virtual void check_unchanged() const {}
  /// Array bytes the last open() copied because the mode could not reach them in place.
  [[nodiscard]] virtual std::uint64_t bytes_copied() const noexcept { return 0; }
};

/// Where a job's output goes. The job builds its output where no one can see it and
/// publishes it onto the name only after success (a result under a user's name is whole and
/// correct, or absent). Not thread-safe; one job at a time.
class OutputTarget {
 public:
  virtual ~OutputTarget() = default;
  /// What the user gave ("out.npy", "shm:sum", "<array>"): for messages.
  [[nodiscard]] virtual std::string text() const = 0;
  /// Everything that can be checked before any work: an existing name without `force`
  /// (Error(exists)), a directory that is missing or not writable (Error(bad_input)).
  /// Nothing is removed here.
  virtual void check(bool force) = 0;
  /// The job's inputs, as opened, before create(): a target that writes a caller's memory in
  /// place builds the output apart instead when that memory is also an input's.
  virtual void set_inputs(std::span<const JobArray> /*inputs*/) {}
  /// The job's unpublished output for `spec`, placed for `placement`'s mode.
  [[nodiscard]] virtual JobArray create(const ArraySpec& spec, const ArrayPlacement& placement) = 0;
  /// Publishes the finished output (one rename/link, or a copy into a caller's array). Throws
  /// Error(exists) if the name appeared meanwhile without `force`, Error(job_failed) otherwise.
  virtual void publish(bool force) = 0;
  /// The published array, where the target keeps one in this process (a new array, a caller's
  /// array); empty otherwise.
  [[nodiscard]] virtual AnyArray result() const { return {}; }
  /// Array bytes the last job copied into or out of the output because the mode could not
  /// reach it in place.
  [[nodiscard]] virtual std::uint64_t bytes_copied() const noexcept { return 0; }
};

/// An input or output named by text: "shm:NAME", "FILE.npy", or a registered format.
/// Throws SpecError(input/output) for text no format accepts.
std::shared_ptr<ArraySource> open_source(const std::string& text, const Backing& backing = {});
std::shared_ptr<OutputTarget> open_target(const std::string& text, const Backing& backing = {});

/// A caller's array as an input. Used where it is when the mode can reach it (threads, copy
/// and fork always; share mode when it is a named segment); otherwise copied once into a job
/// segment, and the copy counted in JobReport::bytes_copied. `array.array` must stay valid
/// for the job (its owner keeps it alive).
std::shared_ptr<ArraySource> array_source(JobArray array, std::string text = "<array>");
/// A caller's array as the output: written in place when the mode can reach it and it is not
/// also an input, else built in a job array and copied in after success (counted in
/// bytes_copied). Its dtype and shape must
/// be the kernel's output's (Error(bad_input) otherwise).
std::shared_ptr<OutputTarget> array_target(JobArray array, std::string text = "<array>");
/// A new array for the output, made for the mode (a job segment in share mode, whose name is
/// removed once the job is over: nothing stays in the store, even if this process is killed
/// later); JobReport::result holds it.
std::shared_ptr<OutputTarget> new_array_target();

/// A format for inputs and outputs named by text: `accepts` says whether text is this format's
/// ("a.h5:/dset"); the factories make its source and target (target may be null: input-only).
struct ArrayFormat {
  std::string name;  ///< "npy", "shm", "hdf5", ...: for `tilepool kernels`-style listings
  std::function<bool(std::string_view text)> accepts;
  std::function<std::shared_ptr<ArraySource>(const std::string& text, const Backing& backing)> source;
  std::function<std::shared_ptr<OutputTarget>(const std::string& text, const Backing& backing)> target;
  /// How a user writes it ("FILE.npy", "shm:NAME"), for help and messages (array_forms).
  std::string form;
};
/// Adds a format, tried before the built-in ones (the last registered first). Thread-safe.
void register_array_format(ArrayFormat format);
/// Every format's form, as help text and messages say them: "FILE.npy or shm:NAME" (the
/// built-in ones first, then the registered ones). Thread-safe.
std::string array_forms();

/// Everything a job needs: what to compute, on what, into what, and how.
struct JobSpec {
  std::string kernel;
  std::vector<std::shared_ptr<ArraySource>> inputs;
  std::shared_ptr<OutputTarget> output;
  /// Tile extents for the last k axes; nullopt: the kernel's iteration space must be 0-d.
  std::optional<Shape> tile;
  Params params;
  /// Kernel plugins (FILE.so) to load before the kernel is looked up.
  std::vector<std::filesystem::path> plugins;
  // --- how (ignored when run_job is given a pool: the pool's settings hold) --------------
  Mode mode = Mode::share;
  int workers = 0;  ///< 0: one per core
  Backing backing;  ///< where job segments go (control block, converted inputs, shm: outputs)
  std::chrono::milliseconds tile_timeout{0};
  /// How the job's tiles are handed out within the pool (and, for tilepool-mpi, between nodes).
  DispatchPolicy dispatch;
  // --- options -------------------------------------------------------------------------
  bool force = false;           ///< replace an existing output (in the publish step, never before)
  bool measure_memory = false;  ///< fill JobReport::peak_pss_bytes (walks page tables: costs time)
  /// Fail the job when the kernel reads or views outside the input regions it declared or its
  /// own output box (JobRequest::check_regions): every mode then runs tiles as copy mode does.
  bool check_regions = false;
  /// Tiles to run (default all): a node's block of a distributed job.
  TileRange tiles;
  /// Called from the runner's thread about every 20 ms with tiles done and total.
  std::function<void(std::int64_t done, std::int64_t total)> progress;
  /// Set (from any thread) to stop the job: run_job then throws Error(interrupted), the
  /// workers are stopped and the job's segments removed. Null: only signals stop it
  /// (install_interrupt_handlers).
  const std::atomic<bool>* cancel = nullptr;
};

/// What a job did, as `--json` prints it. Times in seconds.
struct JobReport {
  Mode mode = Mode::share;
  std::string kernel;
  int workers = 0;
  std::int64_t tiles = 0;  ///< tiles this job ran (its range's)
  Shape shape;             ///< the first input's shape
  Shape tile;
  double wall_s = 0, load_s = 0, spawn_s = 0, compute_s = 0, write_s = 0;
  std::uint64_t bytes_copied = 0;  ///< array bytes that crossed a pipe or were copied for the mode
  std::uint64_t peak_pss_bytes = 0;
  std::int64_t retries = 0;
  /// A reduction's per-tile partials in tile order (a distributed job adds every node's).
  std::vector<TilePartial> partials;
  /// The output, where the target keeps it in this process (new_array_target, array_target).
  AnyArray result;
};

/// A job's geometry, found from its spec before any memory exists: what run_job prepares once.
struct JobPlan {
  const KernelDef* kernel = nullptr;
  std::vector<ArraySpec> inputs;  ///< each source's dtype and shape
  ArraySpec output;               ///< what the kernel makes of them
  TileGrid grid;                  ///< its iteration space cut by the spec's tile
};
/// Loads the spec's plugins, finds the kernel, reads each source's spec and checks them
/// against the kernel, the parameters and the tile. Throws SpecError naming the field, or
/// Error(bad_input) naming a source; makes no memory and starts nothing.
JobPlan plan_job(const JobSpec& spec);

/// Runs one job: loads plugins, resolves and checks the sources, prepares the job once,
/// places its arrays, runs it on `pool` (or on a pool started for it and stopped after),
/// checks the inputs did not change, and publishes the output. Throws Error (SpecError for a
/// field of the spec): usage/bad_input/exists/no_space before any work, job_failed,
/// interrupted. After any error nothing of the job is left (segments, temporaries), and a
/// user's existing output is as it was.
JobReport run_job(const JobSpec& spec, Pool* pool = nullptr);
/// The same for a job already planned: `plan` is plan_job(spec)'s (a front end that needed the
/// plan first, to split the tiles between nodes, may then swap the spec's sources and output
/// for ones of the same specs): nothing is planned again.
JobReport run_job(const JobSpec& spec, const JobPlan& plan, Pool* pool = nullptr);

/// The report as one JSON object (the `--json` fields), as text (report_json.hpp: as an object).
std::string report_json(const JobReport& report);

}  // namespace tilepool
