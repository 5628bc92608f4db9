// The kernels of the plugin tests, in a plugin: one that reads a halo (tp_cross5), one that
// crashes its worker on a chosen tile (tp_crash), one that throws on a chosen tile (tp_throw),
// a box mean whose halo follows its `radius` parameter (tp_box), one that reads a halo of 2
// but declares 1 (tp_box_lying) and one that reads its right neighbour element by element with
// ArrayView::at but declares no halo (tp_next_lying), and one that holds each tile `ms`
// milliseconds (tp_sleep: a kernel that cannot be stopped mid-tile in threads mode). tests/runner/plugin_test.cpp and tests/fault/plugin_fault_test.cpp load it.
#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <string>
#include <thread>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

using namespace tilepool;

// out[.., i, j] = in[i, j] + its four neighbours over the last two axes, borders clamped:
// every tile reads a one-element halo (its declared input region).
class Cross5 final : public BoundKernel {
 public:
  Cross5(std::span<const AnyArray> inputs, const AnyArray& output) : in_(inputs[0].as<const double>()), out_(output.as<double>()) {}
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const Box region = grown_on_last_two_axes(box, 1, in_.shape());
    const auto in = in_.tile(region);
    const auto out = out_.tile(box);
    const auto r = static_cast<std::size_t>(box.ndim - 2), c = static_cast<std::size_t>(box.ndim - 1);
    const std::int64_t height = in_.shape()[r], width = in_.shape()[c];
    const auto at = [&](std::int64_t p, std::int64_t i, std::int64_t j) {
      i = std::clamp<std::int64_t>(i, 0, height - 1) - region.lo[r];
      j = std::clamp<std::int64_t>(j, 0, width - 1) - region.lo[c];
      return in.plane(p)(i, j);
    };
    for (std::int64_t p = 0; p < out.plane_count(); ++p) {
      auto o = out.plane(p);
      for (std::int64_t i = box.lo[r]; i < box.hi[r]; ++i) {
        for (std::int64_t j = box.lo[c]; j < box.hi[c]; ++j) {
          o(i - box.lo[r], j - box.lo[c]) = at(p, i, j) + at(p, i - 1, j) + at(p, i + 1, j) + at(p, i, j - 1) + at(p, i, j + 1);
        }
      }
    }
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
};

ArraySpec at_least_2d(std::span<const ArraySpec> inputs, const Params& params) {
  if (inputs[0].shape.size() < 2) throw Error(Errc::bad_input, "expected at least 2 axes");
  return same_as_inputs(inputs, params);
}

const KernelDef kCross5{
    .name = "tp_cross5",
    .summary = "a test kernel: each element plus its 4 neighbours, borders clamped (reads a halo)",
    .arity = 1,
    .dtypes = {DType::float64},
    .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec> inputs, const Params&) {
      return grown_on_last_two_axes(tile, 1, inputs[0].shape);
    },
    .output_spec = at_least_2d,
    .iteration_shape = output_shape,
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params&) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<Cross5>(inputs, output);
    },
};

// out = in over `box` (the kernels below that copy).
void copy_box(const ArrayView<const double>& in, const ArrayView<double>& out, const Box& box) {
  const auto from = in.tile(box);
  const auto to = out.tile(box);
  for (std::int64_t p = 0; p < to.plane_count(); ++p) to.plane(p) = from.plane(p);
}

// Copies its input, except on the tile that holds element (row, col) of the last two axes
// (`--param row=R --param col=C`): there it crashes its process (SIGSEGV) or throws.
template <bool kCrash>
class Misbehave final : public BoundKernel {
 public:
  Misbehave(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params)
      : in_(inputs[0].as<const double>()), out_(output.as<double>()), row_(static_cast<std::int64_t>(params.number("row", name()))),
        col_(static_cast<std::int64_t>(params.number("col", name()))) {}
  static const char* name() { return kCrash ? "tp_crash" : "tp_throw"; }
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const auto r = static_cast<std::size_t>(box.ndim - 2), c = static_cast<std::size_t>(box.ndim - 1);
    if (box.lo[r] <= row_ && row_ < box.hi[r] && box.lo[c] <= col_ && col_ < box.hi[c]) {
      if constexpr (kCrash) {
        // SIGABRT, not SIGSEGV: the sanitizers turn a SEGV into an exit status of their own,
        // and the test checks that the message names the signal.
        std::abort();
      } else {
        throw Error(Errc::job_failed, "tp_throw: element (" + std::to_string(row_) + ", " + std::to_string(col_) +
                                          ") is cursed");
      }
    }
    copy_box(in_, out_, box);
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
  std::int64_t row_, col_;
};

template <bool kCrash>
KernelDef misbehaving(std::string_view name, std::string_view summary) {
  return KernelDef{
      .name = name,
      .summary = summary,
      .arity = 1,
      .dtypes = {DType::float64},
      .params = {{.name = "row", .type = ParamType::integer, .meaning = "the row of the cursed element"},
                 {.name = "col", .type = ParamType::integer, .meaning = "the column of the cursed element"}},
      .output_spec = at_least_2d,
      .iteration_shape = output_shape,
      .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) -> std::unique_ptr<BoundKernel> {
        return std::make_unique<Misbehave<kCrash>>(inputs, output, params);
      },
  };
}

const KernelDef kCrash = misbehaving<true>("tp_crash", "a test kernel: copies, but SIGSEGV on the tile holding (row, col)");
const KernelDef kThrow = misbehaving<false>("tp_throw", "a test kernel: copies, but throws on the tile holding (row, col)");

// out = the sum over the (2r+1)^2 box around each element of the last two axes, borders
// clamped. tp_box reads r = `radius` and declares that halo; tp_box_lying reads r = 2 and
// declares a halo of 1 (a kernel whose input_region is wrong).
template <bool kLying>
class BoxSum final : public BoundKernel {
 public:
  BoxSum(std::span<const AnyArray> inputs, const AnyArray& output, std::int64_t radius)
      : in_(inputs[0].as<const double>()), out_(output.as<double>()), radius_(radius) {}
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const Box region = grown_on_last_two_axes(box, radius_, in_.shape());
    const auto in = in_.tile(region);
    const auto out = out_.tile(box);
    const auto r = static_cast<std::size_t>(box.ndim - 2), c = static_cast<std::size_t>(box.ndim - 1);
    const std::int64_t height = in_.shape()[r], width = in_.shape()[c];
    for (std::int64_t p = 0; p < out.plane_count(); ++p) {
      auto o = out.plane(p);
      for (std::int64_t i = box.lo[r]; i < box.hi[r]; ++i) {
        for (std::int64_t j = box.lo[c]; j < box.hi[c]; ++j) {
          double s = 0;
          for (std::int64_t di = -radius_; di <= radius_; ++di) {
            for (std::int64_t dj = -radius_; dj <= radius_; ++dj) {
              s += in.plane(p)(std::clamp<std::int64_t>(i + di, 0, height - 1) - region.lo[r],
                               std::clamp<std::int64_t>(j + dj, 0, width - 1) - region.lo[c]);
            }
          }
          o(i - box.lo[r], j - box.lo[c]) = s;
        }
      }
    }
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
  std::int64_t radius_;
};

template <bool kLying>
KernelDef box_sum(std::string_view name, std::string_view summary) {
  KernelDef k{
      .name = name,
      .summary = summary,
      .arity = 1,
      .dtypes = {DType::float64},
      .input_region = [](std::size_t, const Box& tile, std::span<const ArraySpec> inputs, const Params& params) {
        const auto radius = kLying ? 1 : static_cast<std::int64_t>(params.number("radius", "tp_box"));
        return grown_on_last_two_axes(tile, radius, inputs[0].shape);
      },
      .output_spec = at_least_2d,
      .iteration_shape = output_shape,
      .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) -> std::unique_ptr<BoundKernel> {
        const auto radius = kLying ? 2 : static_cast<std::int64_t>(params.number("radius", "tp_box"));
        return std::make_unique<BoxSum<kLying>>(inputs, output, radius);
      },
  };
  if (!kLying) k.params = {{.name = "radius", .type = ParamType::integer, .default_value = "1", .meaning = "the box's half-width"}};
  return k;
}

const KernelDef kBox = box_sum<false>("tp_box", "a test kernel: sum over the box of half-width radius (its declared halo)");
const KernelDef kBoxLying = box_sum<true>("tp_box_lying", "a test kernel: 5x5 box sum that declares a 3x3 halo");

// out[i, j] = in[i, j + 1] (the last column repeats), read element by element with
// ArrayView::at: a 2-D kernel that reads one column past its tile and declares no halo.
class NextLying final : public BoundKernel {
 public:
  NextLying(std::span<const AnyArray> inputs, const AnyArray& output) : in_(inputs[0].as<const double>()), out_(output.as<double>()) {}
  void run_tile(const Box& box, TileResult& /*result*/) override {
    const std::int64_t width = in_.shape()[1];
    for (std::int64_t i = box.lo[0]; i < box.hi[0]; ++i) {
      for (std::int64_t j = box.lo[1]; j < box.hi[1]; ++j) {
        out_.at(std::array{i, j}) = in_.at(std::array{i, std::min(j + 1, width - 1)});
      }
    }
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
};

const KernelDef kNextLying{
    .name = "tp_next_lying",
    .summary = "a test kernel: each element's right neighbour, read with at(), with no halo declared (2-D)",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = [](std::span<const ArraySpec> inputs, const Params&) {
      if (inputs[0].shape.size() != 2) throw Error(Errc::bad_input, "tp_next_lying: needs a 2-D array");
      return inputs[0];
    },
    .iteration_shape = output_shape,
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params&) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<NextLying>(inputs, output);
    },
};

// A map whose iteration space is twice its output's first axis: its tiles would write past
// the output. Every mode refuses it before any work.
const KernelDef kWideSpace{
    .name = "tp_wide_space",
    .summary = "a test kernel: a copy whose iteration_shape doubles the first axis (a wrong iteration space)",
    .arity = 1,
    .dtypes = {DType::float64},
    .output_spec = at_least_2d,
    .iteration_shape = [](std::span<const ArraySpec>, const ArraySpec& output) {
      Shape s = output.shape;
      s[0] *= 2;
      return s;
    },
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params&) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<Cross5>(inputs, output);
    },
};

// Copies its input, holding each tile `ms` milliseconds first (a long computation).
class Sleep final : public BoundKernel {
 public:
  Sleep(std::span<const AnyArray> inputs, const AnyArray& output, const Params& params)
      : in_(inputs[0].as<const double>()), out_(output.as<double>()),
        hold_(static_cast<std::int64_t>(params.number("ms", "tp_sleep"))) {}
  void run_tile(const Box& box, TileResult& /*result*/) override {
    std::this_thread::sleep_for(hold_);
    copy_box(in_, out_, box);
  }

 private:
  ArrayView<const double> in_;
  ArrayView<double> out_;
  std::chrono::milliseconds hold_;
};

const KernelDef kSleep{
    .name = "tp_sleep",
    .summary = "a test kernel: copies, holding each tile ms milliseconds",
    .arity = 1,
    .dtypes = {DType::float64},
    .params = {{.name = "ms", .type = ParamType::integer, .default_value = "1000", .meaning = "milliseconds per tile"}},
    .output_spec = at_least_2d,
    .iteration_shape = output_shape,
    .bind = [](std::span<const AnyArray> inputs, const AnyArray& output, const Params& params) -> std::unique_ptr<BoundKernel> {
      return std::make_unique<Sleep>(inputs, output, params);
    },
};

}  // namespace

TILEPOOL_PLUGIN(kCross5, kCrash, kThrow, kBox, kBoxLying, kNextLying, kWideSpace, kSleep)
