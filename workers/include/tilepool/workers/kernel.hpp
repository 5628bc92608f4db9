#pragma once
/// @file
/// The kernel interface: a function over one tile, registered by name, that declares its
/// arity, the dtypes it accepts and its output shape and dtype.

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tilepool/shared/array_view.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/shape.hpp"
#include "tilepool/shared/tiling.hpp"

namespace tilepool {

/// A job's `--param key=value` pairs. Copyable value type.
class Params {
 public:
  Params() = default;
  /// Parses "key=value" items; throws Error(usage) naming a malformed one.
  static Params parse(std::span<const std::string> items);
  /// Parses the "key=value\n" text stored in a control block.
  static Params from_text(std::string_view text);
  /// "key=value\n" lines, for a control block.
  [[nodiscard]] std::string to_text() const;

  [[nodiscard]] bool has(std::string_view key) const { return values_.contains(std::string(key)); }
  /// The value as a double; throws Error(usage) if absent (and no default) or not a number.
  [[nodiscard]] double number(std::string_view key, std::string_view kernel) const;
  [[nodiscard]] const std::map<std::string, std::string>& values() const noexcept { return values_; }
  void set(std::string key, std::string value) { values_[std::move(key)] = std::move(value); }

 private:
  std::map<std::string, std::string> values_;
};

/// The dtype and shape of an array, as kernels see them before any memory exists.
struct ArraySpec {
  DType dtype = DType::float64;
  Shape shape;
};

/// How the runner combines per-tile partial results: `sum` adds them in tile order, as
/// float64 or int64 after the output's dtype.
enum class Reduction { none, sum };

/// One tile's extra result: a partial value for reductions.
struct TileResult {
  double f64 = 0;
  std::int64_t i64 = 0;
};

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
  /// Elements of halo a tile reads beyond its box on the last two axes (copy mode ships them).
  int halo = 0;
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
/// The kernel called `name`; throws Error(usage) listing the known ones if there is none.
const KernelDef& find_kernel(std::string_view name);

/// Checks arity and dtypes and returns the output spec: the one place that validates a job's
/// inputs against a kernel, with messages naming the kernel, the input and what was expected.
ArraySpec check_inputs(const KernelDef& kernel, std::span<const ArraySpec> inputs, const Params& params);

/// "float32, float64" for error messages and listings.
std::string format_dtypes(std::span<const DType> dtypes);

}  // namespace tilepool
