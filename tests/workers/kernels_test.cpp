// The built-in kernels, run through a Pool in every mode, against references computed here
// with plain loops (numpy semantics: integer arithmetic wraps, blur3x3 replicates the edge),
// against numpy itself on segments numpy wrote, and across worker counts bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/test_support.hpp"
#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;
using testing::run_python;
using testing::unique_name;

/// Every mode the mode-parameterised tests below run in. fork and copy join this list (one
/// line) once Pool::start accepts them.
constexpr std::array kAllModes{Mode::share, Mode::threads};

/// The dtypes each kernel must accept, written out here so a changed declaration fails a test.
constexpr std::array kEveryDType{DType::bool_,  DType::int8,   DType::int16,   DType::int32,
                                 DType::int64,  DType::uint8,  DType::uint16,  DType::uint32,
                                 DType::uint64, DType::float32, DType::float64};
constexpr std::array kNumericDTypes{DType::int8,   DType::int16,  DType::int32,  DType::int64,   DType::uint8,
                                    DType::uint16, DType::uint32, DType::uint64, DType::float32, DType::float64};
constexpr std::array kFloatDTypes{DType::float32, DType::float64};

/// A byte that no kernel writes by accident: outputs start filled with it, so a tile that a
/// kernel skipped shows up as a mismatch even where the right answer is 0 or false.
constexpr unsigned char kUnwritten = 0xA5;

// ---------------------------------------------------------------------------------------------
// Arrays

/// The elements of a segment as a T array (the segment's own memory).
template <class T>
T* elements(const ArraySegment& s) {
  return reinterpret_cast<T*>(s.data());
}

/// Deterministic values: every bit pattern for integers (so arithmetic wraps often), mixed-sign
/// fractions for floats.
template <class T>
T random_value(std::mt19937_64& gen) {
  if constexpr (std::is_same_v<T, bool>) {
    return (gen() & 1U) != 0;
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(gen());  // keeps the low bits: any value of T
  } else {
    return static_cast<T>(std::uniform_real_distribution<double>(-1000.0, 1000.0)(gen));
  }
}

ArraySegment random_segment(DType dtype, const Shape& shape, std::uint64_t seed) {
  ArraySegment s = ArraySegment::create(unique_name("in"), dtype, shape);
  std::mt19937_64 gen(seed);
  visit_dtype(dtype, [&]<class T>(std::type_identity<T>) {
    T* p = elements<T>(s);
    for (std::int64_t i = 0; i < s.array().size(); ++i) p[i] = random_value<T>(gen);
  });
  return s;
}

/// A segment holding exactly `values`, of `shape` (1-D if empty).
template <class T>
ArraySegment segment_of(const std::vector<T>& values, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<std::int64_t>(values.size())};
  ArraySegment s = ArraySegment::create(unique_name("in"), dtype_of_v<T>, shape);
  T* p = elements<T>(s);
  std::size_t i = 0;
  for (const T v : values) p[i++] = v;
  return s;
}

/// A fresh output segment filled with kUnwritten bytes.
ArraySegment output_segment(DType dtype, const Shape& shape, unsigned char fill = kUnwritten) {
  ArraySegment s = ArraySegment::create(unique_name("out"), dtype, shape);
  std::memset(s.data(), fill, s.data_bytes());
  return s;
}

template <class T>
std::vector<T> values_of(const ArraySegment& s) {
  const T* p = elements<T>(s);
  return std::vector<T>(p, p + s.array().size());
}

/// A value for a failure message; bool is printed from its byte, which may be kUnwritten.
template <class T>
std::string describe(const T* p) {
  std::ostringstream os;
  if constexpr (std::is_same_v<T, bool>) {
    unsigned char byte = 0;
    std::memcpy(&byte, p, 1);
    os << "byte " << static_cast<int>(byte);
  } else if constexpr (std::is_integral_v<T>) {
    os << +*p;
  } else {
    os << std::setprecision(std::numeric_limits<T>::max_digits10) << *p;
  }
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/// Success if every element of `out` has the bits of `expected(i)`.
template <class T, class Expected>
AssertionResult bitwise_equal(const ArraySegment& out, Expected&& expected) {
  const T* actual = elements<const T>(out);
  const std::int64_t n = out.array().size();
  std::int64_t mismatches = 0;
  std::ostringstream first;
  for (std::int64_t i = 0; i < n; ++i) {
    const T want = expected(i);
    if (std::memcmp(&actual[i], &want, sizeof(T)) != 0) {
      if (mismatches++ == 0) first << "element " << i << " is " << describe(&actual[i]) << ", expected " << describe(&want);
    }
  }
  if (mismatches == 0) return AssertionSuccess();
  return AssertionFailure() << mismatches << " of " << n << " elements differ; first: " << first.str();
}

/// A reference value and how far a correct result may be from it.
struct Approx {
  long double value;
  long double tolerance;
};

/// Success if every element of `out` is within `expected(i).tolerance` of its value.
template <class T, class Expected>
AssertionResult near_equal(const ArraySegment& out, Expected&& expected) {
  const T* actual = elements<const T>(out);
  const std::int64_t n = out.array().size();
  std::int64_t mismatches = 0;
  std::ostringstream first;
  for (std::int64_t i = 0; i < n; ++i) {
    const Approx want = expected(i);
    const long double got = actual[i];
    // Written so that NaN (e.g. an unwritten float) fails too.
    if (!(std::fabs(got - want.value) <= want.tolerance)) {
      if (mismatches++ == 0) {
        first << std::setprecision(20) << "element " << i << " is " << got << ", expected " << want.value << " +- "
              << want.tolerance;
      }
    }
  }
  if (mismatches == 0) return AssertionSuccess();
  return AssertionFailure() << mismatches << " of " << n << " elements differ; first: " << first.str();
}

AssertionResult same_bytes(const ArraySegment& actual, const ArraySegment& expected) {
  if (actual.dtype() != expected.dtype() || actual.shape() != expected.shape()) {
    return AssertionFailure() << "output is " << dtype_name(actual.dtype()) << " " << format_shape(actual.shape())
                              << ", expected " << dtype_name(expected.dtype()) << " " << format_shape(expected.shape());
  }
  const auto* a = reinterpret_cast<const unsigned char*>(actual.data());
  const auto* e = reinterpret_cast<const unsigned char*>(expected.data());
  for (std::size_t i = 0; i < actual.data_bytes(); ++i) {
    if (a[i] != e[i]) {
      return AssertionFailure() << "byte " << i << " of " << actual.data_bytes() << " differs: " << static_cast<int>(a[i])
                                << " vs " << static_cast<int>(e[i]);
    }
  }
  return AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// References: numpy's semantics written as plain loops.

// Integer arithmetic modulo 2^64, then converted to T, which (since C++20) keeps the low bits:
// numpy's wrap-around for every integer width.
template <class T>
T reference_add(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    return a || b;  // numpy: bool + bool is logical or
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
  } else {
    return a + b;
  }
}

template <class T>
T reference_negate(T a) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(std::uint64_t{0} - static_cast<std::uint64_t>(a));
  } else {
    return -a;
  }
}

template <class T>
T reference_square(T a) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(a));
  } else {
    return a * a;
  }
}

/// Leading planes, rows and columns of a shape seen as a stack of 2-D images.
struct Planes {
  std::int64_t count = 1, rows = 1, cols = 1;
};
Planes planes_of(const Shape& shape) {
  Planes p;
  const std::size_t n = shape.size();
  for (std::size_t a = 0; a + 2 < n; ++a) p.count *= shape[a];
  p.rows = shape[n - 2];
  p.cols = shape[n - 1];
  return p;
}

/// The 3x3 mean at flat index `i`, rows and columns clamped to the image.
template <class T>
Approx reference_blur(const T* in, const Planes& p, std::int64_t i, long double epsilon) {
  const std::int64_t plane = i / (p.rows * p.cols);
  const std::int64_t r = i / p.cols % p.rows;
  const std::int64_t c = i % p.cols;
  long double sum = 0;
  long double magnitude = 0;
  for (std::int64_t dr = -1; dr <= 1; ++dr) {
    for (std::int64_t dc = -1; dc <= 1; ++dc) {
      const std::int64_t rr = std::clamp<std::int64_t>(r + dr, 0, p.rows - 1);
      const std::int64_t cc = std::clamp<std::int64_t>(c + dc, 0, p.cols - 1);
      const auto v = static_cast<long double>(in[(plane * p.rows + rr) * p.cols + cc]);
      sum += v;
      magnitude += std::fabs(v);
    }
  }
  // Nine additions and a division, each off by at most half an ulp of the output type.
  return Approx{sum / 9, 12 * epsilon * (magnitude / 9) + LDBL_MIN};
}

/// Element `i` of A (m x k) times B (k x n), with the usual error bound of a k-term dot product.
template <class T>
Approx reference_matmul(const T* a, const T* b, std::int64_t k, std::int64_t n, std::int64_t i) {
  const std::int64_t row = i / n;
  const std::int64_t col = i % n;
  long double sum = 0;
  long double magnitude = 0;
  for (std::int64_t j = 0; j < k; ++j) {
    const long double term = static_cast<long double>(a[row * k + j]) * static_cast<long double>(b[j * n + col]);
    sum += term;
    magnitude += std::fabs(term);
  }
  const long double epsilon = std::numeric_limits<T>::epsilon();
  return Approx{sum, 2 * static_cast<long double>(k + 1) * epsilon * magnitude + LDBL_MIN};
}

/// What each kernel's output must be (numpy's semantics), computed with plain loops from the
/// inputs; `params` as the job got them.
AssertionResult matches_reference(std::string_view kernel, const std::vector<const ArraySegment*>& inputs,
                                  const ArraySegment& out, const Params& params) {
  const ArraySegment& a = *inputs[0];
  const DType dtype = a.dtype();
  auto check_spec = [&](DType want_dtype, const Shape& want_shape) -> AssertionResult {
    if (out.dtype() != want_dtype || out.shape() != want_shape) {
      return AssertionFailure() << "output is " << dtype_name(out.dtype()) << " " << format_shape(out.shape())
                                << ", expected " << dtype_name(want_dtype) << " " << format_shape(want_shape);
    }
    return AssertionSuccess();
  };
  return visit_dtype(dtype, [&]<class T>(std::type_identity<T>) -> AssertionResult {
    const T* x = elements<const T>(a);
    const std::int64_t n = a.array().size();
    if (kernel == "add") {
      const T* y = elements<const T>(*inputs[1]);
      if (auto r = check_spec(dtype, a.shape()); !r) return r;
      return bitwise_equal<T>(out, [&](std::int64_t i) { return reference_add(x[i], y[i]); });
    }
    if (kernel == "negate") {
      if (auto r = check_spec(dtype, a.shape()); !r) return r;
      return bitwise_equal<T>(out, [&](std::int64_t i) { return reference_negate(x[i]); });
    }
    if (kernel == "square") {
      if (auto r = check_spec(dtype, a.shape()); !r) return r;
      return bitwise_equal<T>(out, [&](std::int64_t i) { return reference_square(x[i]); });
    }
    if (kernel == "add_scalar") {
      // Tests pass values that T holds exactly (or, for floats, rounds like numpy's scalar).
      const auto value = static_cast<T>(std::stod(params.values().at("value")));
      if (auto r = check_spec(dtype, a.shape()); !r) return r;
      return bitwise_equal<T>(out, [&](std::int64_t i) { return reference_add(x[i], value); });
    }
    if (kernel == "blur3x3") {
      const Planes p = planes_of(a.shape());
      if constexpr (std::is_same_v<T, float>) {
        if (auto r = check_spec(DType::float32, a.shape()); !r) return r;
        return near_equal<float>(out, [&](std::int64_t i) { return reference_blur(x, p, i, FLT_EPSILON); });
      } else {
        if (auto r = check_spec(DType::float64, a.shape()); !r) return r;
        return near_equal<double>(out, [&](std::int64_t i) { return reference_blur(x, p, i, DBL_EPSILON); });
      }
    }
    if (kernel == "matmul") {
      const ArraySegment& b = *inputs[1];
      const std::int64_t k = a.shape()[1];
      const std::int64_t cols = b.shape()[1];
      if (auto r = check_spec(dtype, Shape{a.shape()[0], cols}); !r) return r;
      const T* y = elements<const T>(b);
      return near_equal<T>(out, [&](std::int64_t i) { return reference_matmul(x, y, k, cols, i); });
    }
    if (kernel == "sum") {
      if constexpr (std::is_floating_point_v<T>) {
        if (auto r = check_spec(DType::float64, Shape{}); !r) return r;
        long double sum = 0;
        long double magnitude = 0;
        for (std::int64_t i = 0; i < n; ++i) {
          sum += x[i];
          magnitude += std::fabs(static_cast<long double>(x[i]));
        }
        const long double tolerance = 2 * static_cast<long double>(n + 1) * DBL_EPSILON * magnitude + LDBL_MIN;
        return near_equal<double>(out, [&](std::int64_t) { return Approx{sum, tolerance}; });
      } else {
        // numpy sums bool and every integer dtype in 64 bits, wrapping modulo 2^64.
        if (auto r = check_spec(DType::int64, Shape{}); !r) return r;
        std::uint64_t sum = 0;
        for (std::int64_t i = 0; i < n; ++i) sum += static_cast<std::uint64_t>(x[i]);
        return bitwise_equal<std::int64_t>(out, [&](std::int64_t) { return static_cast<std::int64_t>(sum); });
      }
    }
    return AssertionFailure() << "no reference for kernel " << kernel;
  });
}

// ---------------------------------------------------------------------------------------------
// Cases

/// An input shape and the tile it is cut into.
struct TileCase {
  Shape shape;
  Shape tile;
};

std::string describe(DType dtype, const TileCase& c) {
  return std::string(dtype_name(dtype)) + " " + format_shape(c.shape) + " in tiles " + format_shape(c.tile);
}

/// 1-D, 2-D and 3-D shapes, each in tiles that do not divide it, one tile covering everything,
/// and tiles of one element (plus tiles over fewer axes than the array has).
const std::vector<TileCase>& elementwise_cases() {
  static const std::vector<TileCase> cases = {
      {{37}, {4}},           {{37}, {64}},           {{37}, {1}},
      {{13, 17}, {4, 5}},    {{13, 17}, {5}},        {{13, 17}, {32, 32}},   {{13, 17}, {1, 1}},
      {{5, 7, 9}, {2, 3, 4}}, {{5, 7, 9}, {3, 4}},   {{5, 7, 9}, {16, 16, 16}}, {{5, 7, 9}, {1, 1, 1}},
  };
  return cases;
}

/// blur3x3 needs two axes; it reads a halo, so one-row, one-column and 2x2 images matter.
const std::vector<TileCase>& blur_cases() {
  static const std::vector<TileCase> cases = {
      {{13, 17}, {4, 5}},     {{13, 17}, {6}},         {{13, 17}, {32, 32}},  {{13, 17}, {1, 1}},
      {{1, 9}, {1, 4}},       {{9, 1}, {4, 1}},        {{2, 2}, {1, 1}},
      {{4, 6, 7}, {3, 4}},    {{4, 6, 7}, {3, 4, 5}},  {{4, 6, 7}, {1, 1, 1}}, {{4, 6, 7}, {8, 8, 8}},
      {{2, 3, 5, 6}, {2, 4}},
  };
  return cases;
}

/// A (M x K) times B (K x N), cut over the M x N output.
struct MatmulCase {
  Shape a;
  Shape b;
  Shape tile;
};

const std::vector<MatmulCase>& matmul_cases() {
  static const std::vector<MatmulCase> cases = {
      {{13, 7}, {7, 11}, {4, 5}},   {{13, 7}, {7, 11}, {3}},     {{13, 7}, {7, 11}, {64, 64}},
      {{13, 7}, {7, 11}, {1, 1}},   {{1, 1}, {1, 1}, {1, 1}},    {{1, 23}, {23, 1}, {4, 4}},
      {{9, 1}, {1, 8}, {2, 3}},     {{40, 33}, {33, 36}, {16, 16}},
  };
  return cases;
}

// ---------------------------------------------------------------------------------------------
// The fixture

class KernelsTest : public ::testing::TestWithParam<Mode> {
 protected:
  Pool start_pool(int workers = 3) const { return Pool::start(PoolOptions{.workers = workers, .mode = GetParam()}); }

  /// Runs a map or reduction kernel over fresh random inputs of every case, in one pool, and
  /// checks each output against the reference.
  void expect_matches_reference(std::string_view kernel, std::span<const DType> dtypes, int arity,
                                const std::vector<TileCase>& cases, const Params& params = {}) {
    Pool pool = start_pool();
    std::uint64_t seed = 1;
    for (const DType dtype : dtypes) {
      for (const TileCase& c : cases) {
        SCOPED_TRACE(std::string(kernel) + " on " + describe(dtype, c));
        std::vector<ArraySegment> in;
        for (int i = 0; i < arity; ++i) in.push_back(random_segment(dtype, c.shape, seed++));
        ArraySegment out = output_segment(output_dtype(kernel, dtype), kernel == "sum" ? Shape{} : c.shape);
        JobRequest job{std::string(kernel), {}, JobArray::of(out), c.tile, params};
        std::vector<const ArraySegment*> views;
        for (const ArraySegment& s : in) {
          job.inputs.push_back(JobArray::of(s));
          views.push_back(&s);
        }

        pool.run(job);

        EXPECT_TRUE(matches_reference(kernel, views, out, params));
      }
    }
  }

  static DType output_dtype(std::string_view kernel, DType in) {
    if (kernel == "blur3x3") return in == DType::float32 ? DType::float32 : DType::float64;
    if (kernel == "sum") return dtype_is_float(in) ? DType::float64 : DType::int64;
    return in;
  }

  /// Runs `kernel` on 1-D inputs holding `values` (one tile per element) and returns the output.
  template <class Out, class T>
  std::vector<Out> run_on(std::string_view kernel, const std::vector<std::vector<T>>& values, const Params& params = {}) {
    std::vector<ArraySegment> in;
    JobRequest job{std::string(kernel), {}, JobArray{}, {1}, params};
    for (const auto& v : values) in.push_back(segment_of(v));
    for (const ArraySegment& s : in) job.inputs.push_back(JobArray::of(s));
    ArraySegment out = output_segment(dtype_of_v<Out>, kernel == "sum" ? Shape{} : in[0].shape());
    job.output = JobArray::of(out);
    Pool pool = start_pool(2);
    pool.run(job);
    return values_of<Out>(out);
  }
};

// ---------------------------------------------------------------------------------------------
// Each kernel against its plain-loop reference: every dtype it takes, every shape and tiling.

TEST_P(KernelsTest, AddMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  expect_matches_reference("add", kEveryDType, 2, elementwise_cases());
}

TEST_P(KernelsTest, NegateMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  expect_matches_reference("negate", kNumericDTypes, 1, elementwise_cases());
}

TEST_P(KernelsTest, SquareMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  expect_matches_reference("square", kNumericDTypes, 1, elementwise_cases());
}

TEST_P(KernelsTest, AddScalarMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  Params params;
  params.set("value", "7");  // in range of every numeric dtype (negative values are not, for unsigned ones)
  expect_matches_reference("add_scalar", kNumericDTypes, 1, elementwise_cases(), params);
}

TEST_P(KernelsTest, AddScalarWithFractionMatchesPlainLoopReferenceForFloats) {
  Params params;
  params.set("value", "0.1");  // not exact in binary: float32 adds float32(0.1), as numpy does
  expect_matches_reference("add_scalar", kFloatDTypes, 1, elementwise_cases(), params);
}

TEST_P(KernelsTest, Blur3x3MatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  expect_matches_reference("blur3x3", kNumericDTypes, 1, blur_cases());
}

TEST_P(KernelsTest, SumMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  expect_matches_reference("sum", kEveryDType, 1, elementwise_cases());
}

TEST_P(KernelsTest, MatmulMatchesPlainLoopReferenceForEveryDtypeShapeAndTiling) {
  Pool pool = start_pool();
  std::uint64_t seed = 100;
  for (const DType dtype : kFloatDTypes) {
    for (const MatmulCase& c : matmul_cases()) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " " + format_shape(c.a) + " x " + format_shape(c.b) + " in tiles " +
                   format_shape(c.tile));
      ArraySegment a = random_segment(dtype, c.a, seed++);
      ArraySegment b = random_segment(dtype, c.b, seed++);
      ArraySegment out = output_segment(dtype, {c.a[0], c.b[1]});

      pool.run(JobRequest{"matmul", {JobArray::of(a), JobArray::of(b)}, JobArray::of(out), c.tile, {}});

      EXPECT_TRUE(matches_reference("matmul", {&a, &b}, out, {}));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// numpy's semantics on values worked out by hand (and checked against numpy 1.24).

TEST_P(KernelsTest, IntegerAddWrapsAroundLikeNumpy) {
  EXPECT_EQ((run_on<std::int8_t>("add", std::vector<std::vector<std::int8_t>>{{100, 127, -128, -1}, {100, 1, -1, -128}})),
            (std::vector<std::int8_t>{-56, -128, 127, 127}));
  EXPECT_EQ((run_on<std::uint8_t>("add", std::vector<std::vector<std::uint8_t>>{{200, 255}, {100, 1}})),
            (std::vector<std::uint8_t>{44, 0}));
  constexpr auto kMax64 = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ((run_on<std::int64_t>("add", std::vector<std::vector<std::int64_t>>{{kMax64}, {1}})),
            (std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min()}));
}

TEST_P(KernelsTest, BoolAddIsLogicalOrLikeNumpy) {
  EXPECT_EQ((run_on<bool>("add", std::vector<std::vector<bool>>{{true, true, false, false}, {true, false, true, false}})),
            (std::vector<bool>{true, true, true, false}));
}

TEST_P(KernelsTest, IntegerNegateWrapsAroundLikeNumpy) {
  EXPECT_EQ((run_on<std::uint8_t>("negate", std::vector<std::vector<std::uint8_t>>{{0, 1, 255, 128}})),
            (std::vector<std::uint8_t>{0, 255, 1, 128}));
  EXPECT_EQ((run_on<std::int8_t>("negate", std::vector<std::vector<std::int8_t>>{{-128, 127, 0}})),
            (std::vector<std::int8_t>{-128, -127, 0}));
  EXPECT_EQ((run_on<std::uint64_t>("negate", std::vector<std::vector<std::uint64_t>>{{1}})),
            (std::vector<std::uint64_t>{std::numeric_limits<std::uint64_t>::max()}));
  EXPECT_EQ((run_on<std::int32_t>("negate", std::vector<std::vector<std::int32_t>>{{std::numeric_limits<std::int32_t>::min()}})),
            (std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::min()}));
}

TEST_P(KernelsTest, FloatNegateOfZeroIsNegativeZero) {
  const auto out = run_on<double>("negate", std::vector<std::vector<double>>{{0.0, -0.0}});

  ASSERT_EQ(out.size(), 2U);
  EXPECT_TRUE(std::signbit(out[0]));
  EXPECT_FALSE(std::signbit(out[1]));
}

TEST_P(KernelsTest, IntegerSquareWrapsAroundLikeNumpy) {
  EXPECT_EQ((run_on<std::int32_t>("square", std::vector<std::vector<std::int32_t>>{{65536, 46341, -46341, 3}})),
            (std::vector<std::int32_t>{0, -2147479015, -2147479015, 9}));
  EXPECT_EQ((run_on<std::int8_t>("square", std::vector<std::vector<std::int8_t>>{{16, -12}})),
            (std::vector<std::int8_t>{0, -112}));
  EXPECT_EQ((run_on<std::uint16_t>("square", std::vector<std::vector<std::uint16_t>>{{256, 255}})),
            (std::vector<std::uint16_t>{0, 65025}));
  EXPECT_EQ((run_on<std::int64_t>("square", std::vector<std::vector<std::int64_t>>{{std::int64_t{1} << 32, 3037000500}})),
            (std::vector<std::int64_t>{0, -9223372036709301616}));
}

TEST_P(KernelsTest, AddScalarWrapsAroundLikeNumpy) {
  Params hundred;
  hundred.set("value", "100");
  EXPECT_EQ((run_on<std::int8_t>("add_scalar", std::vector<std::vector<std::int8_t>>{{100, -128}}, hundred)),
            (std::vector<std::int8_t>{-56, -28}));
  EXPECT_EQ((run_on<std::uint8_t>("add_scalar", std::vector<std::vector<std::uint8_t>>{{200}}, hundred)),
            (std::vector<std::uint8_t>{44}));
}

TEST_P(KernelsTest, AddScalarReadsAnIntegerValueExactlyToTheDtypesLastValue) {
  // Before: the value went through a double (2^53 + 1 became 2^53; int64's and uint64's
  // maximums were refused as out of range).
  Params big;
  big.set("value", "9007199254740993");
  EXPECT_EQ((run_on<std::int64_t>("add_scalar", std::vector<std::vector<std::int64_t>>{{0, 1}}, big)),
            (std::vector<std::int64_t>{9007199254740993, 9007199254740994}));
  Params max;
  max.set("value", "9223372036854775807");
  EXPECT_EQ((run_on<std::int64_t>("add_scalar", std::vector<std::vector<std::int64_t>>{{0}}, max)),
            (std::vector<std::int64_t>{9223372036854775807}));
  max.set("value", "18446744073709551615");
  EXPECT_EQ((run_on<std::uint64_t>("add_scalar", std::vector<std::vector<std::uint64_t>>{{0, 1}}, max)),
            (std::vector<std::uint64_t>{18446744073709551615U, 0}));
  Params too_big;
  too_big.set("value", "9223372036854775808");
  EXPECT_THROW((void)run_on<std::int64_t>("add_scalar", std::vector<std::vector<std::int64_t>>{{0}}, too_big), Error);
}

TEST_P(KernelsTest, AddScalarOnFloat32AddsTheValueRoundedToFloat32) {
  Params tenth;
  tenth.set("value", "0.1");

  const auto out = run_on<float>("add_scalar", std::vector<std::vector<float>>{{1.0F, 3.0F}}, tenth);

  // numpy: float32 array + 0.1 is float32(a) + float32(0.1), rounded to float32.
  EXPECT_EQ(out, (std::vector<float>{1.0F + 0.1F, 3.0F + 0.1F}));
}

TEST_P(KernelsTest, SumAccumulatesIntegersInInt64AndWrapsLikeNumpy) {
  constexpr auto kMax64 = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ((run_on<std::int64_t>("sum", std::vector<std::vector<std::int8_t>>{{127, 127, 127}})),
            (std::vector<std::int64_t>{381}));
  EXPECT_EQ((run_on<std::int64_t>("sum", std::vector<std::vector<std::int64_t>>{{kMax64, 1}})),
            (std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min()}));
  EXPECT_EQ((run_on<std::int64_t>("sum", std::vector<std::vector<std::uint64_t>>{{std::numeric_limits<std::uint64_t>::max(), 2}})),
            (std::vector<std::int64_t>{1}));
  EXPECT_EQ((run_on<std::int64_t>("sum", std::vector<std::vector<std::uint8_t>>{std::vector<std::uint8_t>(1000, 255)})),
            (std::vector<std::int64_t>{255000}));
  EXPECT_EQ((run_on<std::int64_t>("sum", std::vector<std::vector<bool>>{{true, false, true}})),
            (std::vector<std::int64_t>{2}));
}

TEST_P(KernelsTest, SumOfAnEmptyArrayIsZeroLikeNumpy) {
  ArraySegment ints = segment_of(std::vector<std::int32_t>{}, {0, 5});
  ArraySegment floats = segment_of(std::vector<double>{}, {3, 0});
  ArraySegment int_sum = output_segment(DType::int64, {});
  ArraySegment float_sum = output_segment(DType::float64, {});
  Pool pool = start_pool(2);

  pool.run(JobRequest{"sum", {JobArray::of(ints)}, JobArray::of(int_sum), {2, 2}, {}});
  pool.run(JobRequest{"sum", {JobArray::of(floats)}, JobArray::of(float_sum), {2, 2}, {}});

  EXPECT_EQ(values_of<std::int64_t>(int_sum), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(values_of<double>(float_sum), (std::vector<double>{0.0}));
}

TEST_P(KernelsTest, ElementwiseKernelOnAnEmptyArrayWritesNothingAndSucceeds) {
  ArraySegment a = segment_of(std::vector<float>{}, {4, 0, 3});
  ArraySegment out = output_segment(DType::float32, {4, 0, 3});
  Pool pool = start_pool(2);

  const JobStats stats = pool.run(JobRequest{"add", {JobArray::of(a), JobArray::of(a)}, JobArray::of(out), {2, 2}, {}});

  EXPECT_EQ(stats.tiles, 0);
}

TEST_P(KernelsTest, Blur3x3ReplicatesTheEdgeOfAOneRowImage) {
  std::vector<ArraySegment> cases;
  cases.push_back(segment_of(std::vector<std::int8_t>{0, 9, 18}, {1, 3}));
  cases.push_back(segment_of(std::vector<double>{0, 9, 18}, {1, 3}));
  for (const ArraySegment& in : cases) {
    SCOPED_TRACE(std::string(dtype_name(in.dtype())));
    ArraySegment out = output_segment(DType::float64, {1, 3});
    Pool pool = start_pool(2);

    pool.run(JobRequest{"blur3x3", {JobArray::of(in)}, JobArray::of(out), {1, 1}, {}});

    // Clamped rows are all row 0; clamped columns {0,0,1}, {0,1,2}, {1,2,2}.
    EXPECT_EQ(values_of<double>(out), (std::vector<double>{3, 9, 15}));
  }
}

TEST_P(KernelsTest, Blur3x3OfFloat32IsFloat32) {
  ArraySegment in = segment_of(std::vector<float>{0, 9, 18, 0, 9, 18}, {2, 3});
  ArraySegment out = output_segment(DType::float32, {2, 3});
  Pool pool = start_pool(2);

  pool.run(JobRequest{"blur3x3", {JobArray::of(in)}, JobArray::of(out), {1, 2}, {}});

  EXPECT_EQ(values_of<float>(out), (std::vector<float>{3, 9, 15, 3, 9, 15}));
}

TEST_P(KernelsTest, MatmulOfSmallMatricesIsTheTextbookProduct) {
  ArraySegment a = segment_of(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  ArraySegment b = segment_of(std::vector<double>{7, 8, 9, 10, 11, 12}, {3, 2});
  ArraySegment out = output_segment(DType::float64, {2, 2});
  Pool pool = start_pool(2);

  pool.run(JobRequest{"matmul", {JobArray::of(a), JobArray::of(b)}, JobArray::of(out), {1, 1}, {}});

  EXPECT_EQ(values_of<double>(out), (std::vector<double>{58, 64, 139, 154}));
}

// ---------------------------------------------------------------------------------------------
// Worker counts, many jobs, rejected jobs

/// A job to run on fresh random inputs.
struct Workload {
  std::string kernel;
  DType dtype;
  std::vector<Shape> inputs;
  Shape tile;
  std::string value = {};  ///< add_scalar's --param value
};

const std::vector<Workload>& mixed_workloads() {
  static const std::vector<Workload> workloads = {
      {"add", DType::int8, {{37, 5}, {37, 5}}, {4, 3}},
      {"add", DType::float64, {{6, 11, 13}, {6, 11, 13}}, {5, 4}},
      {"negate", DType::uint8, {{101}}, {7}},
      {"square", DType::int32, {{3, 17, 5}}, {2, 4, 2}},
      {"add_scalar", DType::float32, {{19, 23}}, {8, 8}, "0.1"},
      {"add_scalar", DType::int16, {{64}}, {10}, "-300"},
      {"blur3x3", DType::float32, {{5, 17, 19}}, {4, 5}},
      {"blur3x3", DType::uint16, {{23, 29}}, {1, 7}},
      {"matmul", DType::float64, {{33, 21}, {21, 29}}, {8, 8}},
      {"matmul", DType::float32, {{17, 40}, {40, 9}}, {5, 4}},
      {"sum", DType::float32, {{1000}}, {7}},
      {"sum", DType::float64, {{9, 10, 11}}, {3, 4, 5}},
      {"sum", DType::int64, {{31, 33}}, {4, 4}},
  };
  return workloads;
}

std::string describe(const Workload& w) {
  std::string s = w.kernel + " " + std::string(dtype_name(w.dtype));
  for (const Shape& in : w.inputs) s.append(" ").append(format_shape(in));  // not " " + ...: GCC 12's -Wrestrict misfires
  return s.append(" in tiles ").append(format_shape(w.tile));
}

/// A workload's inputs, made once, and what to ask a pool to do with them.
struct PreparedWorkload {
  const Workload* workload;
  std::vector<ArraySegment> inputs;
  Params params;

  JobRequest request(const ArraySegment& out) const {
    JobRequest job{workload->kernel, {}, JobArray::of(out), workload->tile, params};
    for (const ArraySegment& s : inputs) job.inputs.push_back(JobArray::of(s));
    return job;
  }
  std::vector<const ArraySegment*> views() const {
    std::vector<const ArraySegment*> v;
    for (const ArraySegment& s : inputs) v.push_back(&s);
    return v;
  }
  ArraySegment make_output(unsigned char fill = kUnwritten) const {
    const ArraySpec spec = output_spec(request(*inputs.begin()));  // the spec does not look at the output
    return output_segment(spec.dtype, spec.shape, fill);
  }
};

std::vector<PreparedWorkload> prepare(const std::vector<Workload>& workloads) {
  std::vector<PreparedWorkload> out;
  std::uint64_t seed = 1000;
  for (const Workload& w : workloads) {
    PreparedWorkload p{&w, {}, {}};
    for (const Shape& shape : w.inputs) p.inputs.push_back(random_segment(w.dtype, shape, seed++));
    if (!w.value.empty()) p.params.set("value", w.value);
    out.push_back(std::move(p));
  }
  return out;
}

TEST_P(KernelsTest, ResultsAreBitwiseIdenticalForOneToFourWorkers) {
  // The single-threaded in-process run is the baseline: its output starts as zeros, the pools'
  // as kUnwritten, so a tile that a pool skipped cannot match by accident.
  const std::vector<PreparedWorkload> jobs = prepare(mixed_workloads());
  std::vector<ArraySegment> baseline;
  for (const PreparedWorkload& w : jobs) {
    baseline.push_back(w.make_output(0));
    run_inline(w.request(baseline.back()));
  }

  for (int workers = 1; workers <= 4; ++workers) {
    Pool pool = start_pool(workers);
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      SCOPED_TRACE(std::to_string(workers) + " workers: " + describe(*jobs[i].workload));
      ArraySegment out = jobs[i].make_output();

      pool.run(jobs[i].request(out));

      EXPECT_TRUE(same_bytes(out, baseline[i]));
    }
  }
}

TEST_P(KernelsTest, ManyJobsOfDifferentKernelsAndShapesRunOnOnePool) {
  const std::vector<PreparedWorkload> jobs = prepare(mixed_workloads());
  Pool pool = start_pool(3);

  // Three rounds in three orders: every kernel follows several others on the same workers.
  for (int round = 0; round < 3; ++round) {
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      const PreparedWorkload& w = jobs[(k * (round + 1) + static_cast<std::size_t>(round)) % jobs.size()];
      SCOPED_TRACE("round " + std::to_string(round) + ": " + describe(*w.workload));
      ArraySegment out = w.make_output();

      pool.run(w.request(out));

      EXPECT_TRUE(matches_reference(w.workload->kernel, w.views(), out, w.params));
    }
  }
}

TEST_P(KernelsTest, OutputNameReusedForANewSegmentIsWrittenAfresh) {
  ArraySegment a = random_segment(DType::int32, {8, 9}, 7);
  const std::string name = unique_name("out");
  Pool pool = start_pool(2);
  {
    ArraySegment first = ArraySegment::create(name, DType::int32, {8, 9});
    pool.run(JobRequest{"square", {JobArray::of(a)}, JobArray::of(first), {3, 3}, {}});
  }
  // Same name, new object of another dtype and shape: workers must not keep the old mapping.
  ArraySegment second = ArraySegment::create(name, DType::int64, {});

  pool.run(JobRequest{"sum", {JobArray::of(a)}, JobArray::of(second), {3, 3}, {}});

  EXPECT_TRUE(matches_reference("sum", {&a}, second, {}));
}

TEST_P(KernelsTest, JobThatDoesNotFitItsKernelFailsWithoutTouchingTheOutputAndThePoolGoesOn) {
  ArraySegment a = random_segment(DType::float64, {6, 6}, 3);
  ArraySegment wrong_shape = random_segment(DType::float64, {6, 7}, 4);
  ArraySegment narrow = random_segment(DType::int8, {6}, 5);
  ArraySegment out = output_segment(DType::float64, {6, 6});
  ArraySegment int_out = output_segment(DType::int32, {6, 6});
  Pool pool = start_pool(2);
  struct Rejected {
    JobRequest job;
    Errc code;
    std::vector<std::string> needles;
  };
  Params half;
  half.set("value", "2.5");
  const std::vector<Rejected> rejected = {
      {{"add", {JobArray::of(a), JobArray::of(wrong_shape)}, JobArray::of(out), {2, 2}, {}}, Errc::bad_input, {"add", "(6, 7)", "(6, 6)"}},
      {{"add", {JobArray::of(a)}, JobArray::of(out), {2, 2}, {}}, Errc::usage, {"add", "2 inputs", "got 1"}},
      {{"negate", {JobArray::of(a)}, JobArray::of(int_out), {2, 2}, {}}, Errc::bad_input, {"negate", "int32", "float64"}},
      {{"blur3x3", {JobArray::of(narrow)}, JobArray::of(out), {2}, {}}, Errc::bad_input, {"blur3x3", "(6,)", "2 axes"}},
      {{"matmul", {JobArray::of(a), JobArray::of(a)}, JobArray::of(out), {2, 2, 2}, {}}, Errc::usage, {"3 tile extents", "matmul", "2-D"}},
      {{"matmul", {JobArray::of(wrong_shape), JobArray::of(a)}, JobArray::of(out), {2, 2}, {}}, Errc::bad_input, {"matmul", "inner", "(6, 7) x (6, 6)"}},
      {{"add_scalar", {JobArray::of(narrow)}, JobArray::of(out), {2}, half}, Errc::usage, {"add_scalar", "2.5", "int8"}},
      {{"add_scalar", {JobArray::of(a)}, JobArray::of(out), {2, 2}, {}}, Errc::usage, {"add_scalar", "value"}},
      {{"blur", {JobArray::of(a)}, JobArray::of(out), {2, 2}, {}}, Errc::usage, {"blur", "blur3x3"}},
  };

  for (const Rejected& r : rejected) {
    SCOPED_TRACE(r.job.kernel + " expecting " + r.needles.front());
    try {
      pool.run(r.job);
      ADD_FAILURE() << "the job ran";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), r.code) << e.what();
      for (const std::string& needle : r.needles) EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }

  const std::vector<unsigned char> untouched(out.data_bytes(), kUnwritten);
  EXPECT_EQ(std::memcmp(out.data(), untouched.data(), untouched.size()), 0);
  pool.run(JobRequest{"negate", {JobArray::of(a)}, JobArray::of(out), {4, 4}, {}});
  EXPECT_TRUE(matches_reference("negate", {&a}, out, {}));
}

// ---------------------------------------------------------------------------------------------
// numpy writes the inputs, the pool runs on them, numpy reads the output and checks it.

/// Removes segments that numpy made (tilepool attached them, so nothing else will).
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::vector<std::string> names) : names_(std::move(names)) {}
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  ~RemoveOnExit() {
    for (const std::string& n : names_) {
      try {
        remove_segment(n);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "could not remove " << n << ": " << e.what();
      }
    }
  }

 private:
  std::vector<std::string> names_;
};

std::string shm_path(const std::string& name) { return "'/dev/shm/" + name + "'"; }

/// Python that saves `expression` (numpy, seeded rng `rng`) into /dev/shm/NAME with np.save.
std::string numpy_save(const std::string& name, const std::string& expression) {
  return "with open(" + shm_path(name) + ", 'wb') as f: np.save(f, " + expression + ")\n";
}

/// Runs numpy code; the code prints OK or FAIL and what it saw.
::testing::AssertionResult numpy_says_ok(const std::string& code) {
  const auto r = run_python("import numpy as np\nrng = np.random.default_rng(2024)\n" + code);
  if (r.status == 0 && r.output.starts_with("OK")) return AssertionSuccess();
  return AssertionFailure() << "python exit status " << r.status << ", output:\n" << r.output;
}

TEST_P(KernelsTest, AddOfNumpyWrittenSegmentsIsWhatNumpyComputes) {
  const std::string a_name = unique_name("np-a");
  const std::string b_name = unique_name("np-b");
  RemoveOnExit cleanup({a_name, b_name});
  // int16 over its whole range, so that many sums wrap.
  ASSERT_TRUE(numpy_says_ok(numpy_save(a_name, "rng.integers(-32768, 32768, size=(6, 7, 9), dtype=np.int16)") +
                            numpy_save(b_name, "rng.integers(-32768, 32768, size=(6, 7, 9), dtype=np.int16)") +
                            "print('OK')"));
  const ArraySegment a = ArraySegment::attach(a_name);
  const ArraySegment b = ArraySegment::attach(b_name);
  ArraySegment out = output_segment(DType::int16, {6, 7, 9});
  Pool pool = start_pool(3);

  pool.run(JobRequest{"add", {JobArray::of(a), JobArray::of(b)}, JobArray::of(out), {4, 4}, {}});

  EXPECT_TRUE(numpy_says_ok(
      "a = np.load(" + shm_path(a_name) + "); b = np.load(" + shm_path(b_name) + ")\n"
      "out = np.load(" + shm_path(out.name()) + ", mmap_mode='r')\n"
      "ok = out.dtype == np.int16 and out.shape == a.shape and np.array_equal(out, a + b)\n"
      "wrapped = int(np.count_nonzero((a.astype(np.int64) + b) != (a + b)))\n"
      "print('OK' if ok and wrapped > 0 else 'FAIL', out.dtype, out.shape, 'wrapped', wrapped)\n"));
}

TEST_P(KernelsTest, SumOfNumpyWrittenSegmentsIsWhatNumpyComputes) {
  const std::string f_name = unique_name("np-f");
  const std::string i_name = unique_name("np-i");
  RemoveOnExit cleanup({f_name, i_name});
  ASSERT_TRUE(numpy_says_ok(numpy_save(f_name, "rng.standard_normal((40, 50)) * 1e3") +
                            numpy_save(i_name, "rng.integers(-128, 128, size=(3, 333), dtype=np.int8)") +
                            "print('OK')"));
  const ArraySegment f = ArraySegment::attach(f_name);
  const ArraySegment i = ArraySegment::attach(i_name);
  ArraySegment f_sum = output_segment(DType::float64, {});
  ArraySegment i_sum = output_segment(DType::int64, {});
  Pool pool = start_pool(3);

  pool.run(JobRequest{"sum", {JobArray::of(f)}, JobArray::of(f_sum), {7, 9}, {}});
  pool.run(JobRequest{"sum", {JobArray::of(i)}, JobArray::of(i_sum), {10}, {}});

  EXPECT_TRUE(numpy_says_ok(
      "f = np.load(" + shm_path(f_name) + "); i = np.load(" + shm_path(i_name) + ")\n"
      "fs = np.load(" + shm_path(f_sum.name()) + ", mmap_mode='r'); is_ = np.load(" + shm_path(i_sum.name()) + ", mmap_mode='r')\n"
      "ok = fs.dtype == np.float64 and fs.shape == () and np.isclose(fs, np.sum(f), rtol=1e-12, atol=0)\n"
      "ok = ok and is_.dtype == np.int64 and is_.shape == () and int(is_) == int(np.sum(i))\n"
      "print('OK' if ok else 'FAIL', fs, np.sum(f), is_, np.sum(i))\n"));
}

TEST_P(KernelsTest, Blur3x3OfNumpyWrittenSegmentsIsNumpysEdgePaddedMean) {
  const std::string f_name = unique_name("np-f32");
  const std::string u_name = unique_name("np-u8");
  RemoveOnExit cleanup({f_name, u_name});
  ASSERT_TRUE(numpy_says_ok(numpy_save(f_name, "rng.standard_normal((3, 20, 21)).astype(np.float32)") +
                            numpy_save(u_name, "rng.integers(0, 256, size=(17, 15), dtype=np.uint8)") + "print('OK')"));
  const ArraySegment f = ArraySegment::attach(f_name);
  const ArraySegment u = ArraySegment::attach(u_name);
  ArraySegment f_out = output_segment(DType::float32, {3, 20, 21});
  ArraySegment u_out = output_segment(DType::float64, {17, 15});
  Pool pool = start_pool(3);

  pool.run(JobRequest{"blur3x3", {JobArray::of(f)}, JobArray::of(f_out), {6, 5}, {}});
  pool.run(JobRequest{"blur3x3", {JobArray::of(u)}, JobArray::of(u_out), {4, 4}, {}});

  EXPECT_TRUE(numpy_says_ok(
      "def blur(a):\n"
      "    p = np.pad(a.astype(np.float64), [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode='edge')\n"
      "    h, w = a.shape[-2:]\n"
      "    return sum(p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9\n"
      "f = np.load(" + shm_path(f_name) + "); u = np.load(" + shm_path(u_name) + ")\n"
      "fo = np.load(" + shm_path(f_out.name()) + ", mmap_mode='r'); uo = np.load(" + shm_path(u_out.name()) + ", mmap_mode='r')\n"
      "ok = fo.dtype == np.float32 and fo.shape == f.shape and np.allclose(fo, blur(f), rtol=1e-5, atol=1e-6)\n"
      "ok = ok and uo.dtype == np.float64 and uo.shape == u.shape and np.allclose(uo, blur(u), rtol=1e-13, atol=0)\n"
      "print('OK' if ok else 'FAIL', np.abs(fo - blur(f)).max(), np.abs(uo - blur(u)).max())\n"));
}

TEST_P(KernelsTest, MatmulOfNumpyWrittenSegmentsIsNumpysMatmul) {
  const std::string a_name = unique_name("np-a");
  const std::string b_name = unique_name("np-b");
  RemoveOnExit cleanup({a_name, b_name});
  ASSERT_TRUE(numpy_says_ok(numpy_save(a_name, "rng.standard_normal((45, 31))") +
                            numpy_save(b_name, "rng.standard_normal((31, 27))") + "print('OK')"));
  const ArraySegment a = ArraySegment::attach(a_name);
  const ArraySegment b = ArraySegment::attach(b_name);
  ArraySegment out = output_segment(DType::float64, {45, 27});
  Pool pool = start_pool(3);

  pool.run(JobRequest{"matmul", {JobArray::of(a), JobArray::of(b)}, JobArray::of(out), {8, 8}, {}});

  EXPECT_TRUE(numpy_says_ok(
      "a = np.load(" + shm_path(a_name) + "); b = np.load(" + shm_path(b_name) + ")\n"
      "out = np.load(" + shm_path(out.name()) + ", mmap_mode='r')\n"
      "ok = out.dtype == np.float64 and out.shape == (45, 27) and np.allclose(out, a @ b, rtol=1e-12, atol=1e-12)\n"
      "print('OK' if ok else 'FAIL', out.dtype, out.shape, np.abs(out - a @ b).max())\n"));
}

INSTANTIATE_TEST_SUITE_P(Modes, KernelsTest, ::testing::ValuesIn(kAllModes),
                         [](const ::testing::TestParamInfo<Mode>& param_info) { return std::string(mode_name(param_info.param)); });

}  // namespace
}  // namespace tilepool
