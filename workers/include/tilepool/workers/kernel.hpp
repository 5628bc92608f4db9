#pragma once
/// @file
/// The kernel interface: a function over one tile, registered by name, that declares its
/// arity, the dtypes it accepts and its output shape and dtype.

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/shared/array_view.hpp"
#include "tilepool/shared/limits.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/shape.hpp"
#include "tilepool/shared/tiling.hpp"

namespace tilepool {

/// A job's `--param key=value` pairs. Copyable value type.
class Params {
 public:
  Params() = default;
  /// Parses "key=value" items; throws Error(usage) naming a malformed or repeated one.
  static Params parse(std::span<const std::string> items);
  /// Parses the "key=value\n" text stored in a control block.
  static Params from_text(std::string_view text);
  /// "key=value\n" lines, for a control block.
  [[nodiscard]] std::string to_text() const;

  /// The value as a double; throws Error(usage) if absent (and no default) or not a number.
  [[nodiscard]] double number(std::string_view key, std::string_view kernel) const;
  [[nodiscard]] const std::map<std::string, std::string>& values() const noexcept { return values_; }
  void set(std::string key, std::string value) { values_[std::move(key)] = std::move(value); }
  /// Adds a pair; throws Error(usage) if `key` has a value already ("given twice").
  void add(std::string key, std::string value);

 private:
  std::map<std::string, std::string> values_;
};

/// What a kernel parameter's value must be.
enum class ParamType {
  number,   ///< a finite decimal number ("2.5", "-1e3")
  integer,  ///< a whole decimal number in int64 range ("7", "-3")
  text,     ///< any text without a newline
};

/// A parameter's text read as a finite double (decimal, as `std::from_chars` reads it); a value
/// too small for a double reads as the nearest one (0 or subnormal), as `strtod` and Python's
/// `float()` read it. nullopt if it is not a number or too large for a double.
std::optional<double> parse_number(std::string_view text);

/// Why `text` is not a value of `type`, as the end of "parameter k=v ...": "is not an integer",
/// "is out of range (...)"; empty if it is one.
std::string param_value_problem(std::string_view text, ParamType type);

/// One parameter a kernel accepts (`--param name=value`): KernelDef::params lists them.
struct ParamDef {
  std::string_view name;
  ParamType type = ParamType::number;
  /// The value when the job gives none; empty: the parameter is required.
  std::string_view default_value;
  /// One line for `tilepool kernels`: what the value means.
  std::string_view meaning;
};

/// "number", "integer" or "text".
std::string_view param_type_name(ParamType type) noexcept;

/// The dtype and shape of an array, as kernels see them before any memory exists.
struct ArraySpec {
  DType dtype = DType::float64;
  Shape shape;
};

/// How the runner combines per-tile partial results: `sum` adds them in tile order, as
/// float64 or int64 after the output's dtype.
enum class Reduction { none, sum };

/// One tile's extra result: a reduction's partial value (float64 and int64 sums side by side;
/// the output's dtype picks one).
using TileResult = TilePartial;

/// The total of a reduction's per-tile partials, added in tile order so that the result does
/// not depend on which worker ran which tile; int64 wraps like numpy.
TilePartial sum_in_tile_order(std::span<const TilePartial> partials) noexcept;
/// Writes a reduction's total into its 0-d output: float64, or int64 for an int64 output.
void store_total(const TilePartial& total, const AnyArray& output);

/// A kernel bound to one job's arrays in one process: made once per job, then called per tile.
/// Holds typed views of the inputs and output (which keep their mappings alive).
class BoundKernel {
 public:
  virtual ~BoundKernel() = default;
  /// Computes the tile `box` of the iteration space. Tiles are disjoint; calls for different
  /// tiles may run at once in different workers. Throws Error on failure.
  virtual void run_tile(const Box& box, TileResult& result) = 0;
};

/// A kernel's declaration. Plain data with function pointers; all instances are static.
struct KernelDef {
  std::string_view name;
  std::string_view summary;
  int arity = 1;
  /// The input dtypes it accepts (all inputs share one dtype).
  std::vector<DType> dtypes;
  /// The parameters it accepts, in the order `tilepool kernels` lists them. A job that gives
  /// another key, a value of the wrong type or misses a required one is refused (check_params);
  /// output_spec, input_region and bind see the job's values with the defaults filled in.
  std::vector<ParamDef> params;
  /// The region of input `input` that the tile `tile` (a box of the iteration space) reads, in
  /// that input's coordinates: the tile itself grown by a halo (whose width may follow a
  /// parameter), a row block, a column block... It has as many axes as that input. nullptr means
  /// the tile's own box (an input shaped like the iteration space). A kernel must read nothing
  /// outside it: copy mode ships exactly this region, nothing else is there, and a tile view
  /// asked for outside it fails the job.
  Box (*input_region)(std::size_t input, const Box& tile, std::span<const ArraySpec> inputs, const Params& params) = nullptr;
  Reduction reduction = Reduction::none;
  /// The output's dtype and shape for these inputs; throws Error(bad_input/usage) if they do not fit.
  ArraySpec (*output_spec)(std::span<const ArraySpec> inputs, const Params& params) = nullptr;
  /// The shape the tile grid covers: the output's for maps, the input's for reductions.
  Shape (*iteration_shape)(std::span<const ArraySpec> inputs, const ArraySpec& output) = nullptr;
  /// Binds typed views; `inputs` and `output` match what output_spec accepted.
  std::unique_ptr<BoundKernel> (*bind)(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) = nullptr;
};

/// Every built-in kernel, in the order `tilepool kernels` lists them.
std::span<const KernelDef* const> builtin_kernels() noexcept;
/// Adds a kernel of this program's own to the registry, so find_kernel finds it (in this
/// process, and in workers that are this program: serve_as_worker_if_asked). `kernel` must
/// outlive every job (a static). Throws Error(usage) if its name is empty or taken. Thread-safe.
void register_kernel(const KernelDef& kernel);
/// Every kernel find_kernel knows: the built-ins, then the registered ones. Thread-safe.
std::vector<const KernelDef*> known_kernels();
/// The kernel called `name`; throws Error(usage) listing the known ones if there is none.
const KernelDef& find_kernel(std::string_view name);

/// What `kernel` accepts, for messages: "add_scalar accepts: value (number, required)", or
/// "add takes no parameters".
std::string accepted_params(const KernelDef& kernel);

/// `params` checked against what `kernel` declares (KernelDef::params), with the defaults filled
/// in: the one place that validates a job's parameters. Throws Error(usage) naming the kernel
/// and the keys it accepts for an unknown key, and naming the parameter for a value of the
/// wrong type or a missing required one.
Params check_params(const KernelDef& kernel, const Params& params);

/// Checks parameters (check_params), arity and dtypes and returns the output spec: the one
/// place that validates a job's inputs against a kernel, with messages naming the kernel, the
/// input and what was expected. Anything output_spec throws, std::exception or not, becomes one
/// Error(bad_input or its own code) naming the kernel.
ArraySpec check_inputs(const KernelDef& kernel, std::span<const ArraySpec> inputs, const Params& params);

/// The shape `kernel` tiles for these arrays (KernelDef::iteration_shape); anything it throws
/// becomes one Error(bad_input) naming the kernel.
Shape iteration_shape_of(const KernelDef& kernel, std::span<const ArraySpec> inputs, const ArraySpec& output);

/// The region of input `input` that `kernel` reads for `tile` (KernelDef::input_region, or the
/// tile itself), given the job's parameters (check_params' result). Throws Error(bad_input) if
/// the kernel declares a region with another number of axes than the input or outside it, or
/// if input_region throws (anything, named as the kernel's error).
Box input_region(const KernelDef& kernel, std::size_t input, const Box& tile, std::span<const ArraySpec> inputs,
                 const Params& params);

/// What the exception in flight is, for a one-line message: what() of a std::exception, the
/// text of a thrown string or C string, the value of a thrown number, or its type otherwise.
/// Call only inside a catch block.
std::string describe_current_exception();
/// For a std::terminate handler: ": " and what describe_current_exception says of the
/// exception that is terminating the process, or "" if there is none (std::terminate called).
std::string describe_terminating_exception();
/// "kernel K's output_spec" while the calling thread runs one of the kernel hooks that run in
/// the front end's own process (output_spec, iteration_shape, input_region); "" otherwise. For
/// an exit() or std::terminate() handler: which kernel ended the process.
std::string running_kernel_hook();
/// In a catch (...): true when what was caught is no C++ exception but the forced unwind of
/// pthread_exit() (std::current_exception() is empty for it), which a handler must not drop
/// (libgcc aborts: "FATAL: exception not rethrown"). Caught this way rather than as
/// abi::__forced_unwind&, which binds a reference to no object (UBSan's null check says so).
bool catching_thread_exit() noexcept;
/// The kind of the exception in flight: a tilepool Error's own code, Errc::job_failed for
/// anything else. Call only inside a catch block.
Errc current_error_code() noexcept;
/// The errno behind the exception in flight: a tilepool Error's sys_errno(), a
/// std::system_error's value when it is an errno (generic or system category), else 0. Call
/// only inside a catch block.
int current_error_errno() noexcept;

/// `box` grown by `by` elements on each side of its last two axes, clamped to `shape`: the
/// region of a kernel that reads a halo around its tile.
Box grown_on_last_two_axes(const Box& box, std::int64_t by, const Shape& shape);

/// "float32, float64" for error messages and listings.
std::string format_dtypes(std::span<const DType> dtypes);

}  // namespace tilepool
