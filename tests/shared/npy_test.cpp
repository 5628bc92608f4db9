#include "tilepool/shared/npy.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "shared/error_expectations.hpp"
#include "shared/fifo_guard.hpp"
#include "shared/small_tmpfs.hpp"
#include "shared/value_pattern.hpp"
#include "support/test_support.hpp"
#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

using testing::kAllDTypes;
using testing::TempDir;
using testing::throws_error;

constexpr std::string_view kGoodDict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }";

// The NPY preamble: magic, version, header length (2 bytes for 1.0, 4 for 2.0/3.0).
std::string preamble(int major, int minor, std::size_t len) {
  std::string s = "\x93NUMPY";
  s += static_cast<char>(major);
  s += static_cast<char>(minor);
  const int width = major == 1 ? 2 : 4;
  for (int i = 0; i < width; ++i) s += static_cast<char>((len >> (8 * i)) & 0xFF);
  return s;
}

// A complete header whose dict is exactly `dict` (no padding).
std::string npy_header(std::string_view dict, int major = 1) {
  return preamble(major, 0, dict.size()) + std::string(dict);
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

// Asserts that parsing a header made of `dict` fails with bad_input, naming the input and the problem.
::testing::AssertionResult dict_is_refused(std::string_view dict, std::string_view problem) {
  const std::string header = npy_header(dict);
  return throws_error([&] { (void)npy::parse_header(bytes_of(header), "x.npy"); }, Errc::bad_input,
                      {"x.npy: ", problem});
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <class T>
std::string big_endian_bytes(T value) {
  auto raw = std::bit_cast<std::array<char, sizeof(T)>>(value);
  return {raw.rbegin(), raw.rend()};
}

std::vector<std::string> directory_entries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

// ---- make_header / parse_header round trips -------------------------------------------------

TEST(NpyTest, MakeHeaderRoundTripsEveryDTypeAndShape) {
  const std::vector<Shape> shapes = {
      {}, {0}, {1}, {5}, {365, 16, 16}, {2, 0, 3}, {1, 2, 3, 4, 5}, Shape(32, 1), Shape(32, 2), {std::int64_t{1} << 40},
  };
  for (const DType dt : kAllDTypes) {
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + format_shape(shape));
      const std::string header = npy::make_header(dt, shape);

      const npy::Header h = npy::parse_header(bytes_of(header));

      EXPECT_EQ(h.dtype, dt);
      EXPECT_FALSE(h.big_endian);
      EXPECT_EQ(h.shape, shape);
      EXPECT_EQ(h.data_offset, header.size());
      EXPECT_EQ(h.data_bytes, *byte_count(shape, dtype_size(dt)));
    }
  }
}

TEST(NpyTest, MakeHeaderAlignsTheDataToSixtyFourBytesAndEndsWithNewline) {
  for (const DType dt : kAllDTypes) {
    for (const Shape& shape : {Shape{}, Shape{7}, Shape(32, 123456789)}) {
      const std::string header = npy::make_header(dt, shape);

      EXPECT_EQ(header.size() % npy::kDataAlignment, 0u) << header;
      EXPECT_EQ(header.back(), '\n') << header;
    }
  }
}

TEST(NpyTest, MakeHeaderWritesVersionOneCOrderLittleEndianAsNumpyDoes) {
  const std::string header = npy::make_header(DType::int16, Shape{2, 3});

  EXPECT_EQ(header.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(header.size(), 128u);  // 10 + 60 + 1 bytes do not fit in 64
  EXPECT_EQ(header.substr(10, header.find('}') - 9), "{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }");
}

TEST(NpyTest, HeaderLengthNeedsOnlyThePreamble) {
  const std::string header = npy::make_header(DType::float64, Shape{3, 4});

  EXPECT_EQ(npy::header_length(bytes_of(header).first(10)), header.size());
}

TEST(NpyTest, ParseHeaderAcceptsWhatNumpyWrites) {
  // Exactly what numpy 1.24 writes for np.save(f, np.zeros((2, 3), dtype=np.int64)).
  std::string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }";
  dict.append(128 - 10 - dict.size() - 1, ' ');
  dict += '\n';

  const npy::Header h = npy::parse_header(bytes_of(npy_header(dict)));

  EXPECT_EQ(h.dtype, DType::int64);
  EXPECT_EQ(h.shape, (Shape{2, 3}));
  EXPECT_EQ(h.data_offset, 128u);
  EXPECT_EQ(h.data_bytes, 48u);
}

TEST(NpyTest, ParseHeaderAcceptsDoubleQuotesAnyKeyOrderAndNoTrailingComma) {
  const npy::Header h =
      npy::parse_header(bytes_of(npy_header("{\"shape\": (4, 5), \"fortran_order\": False, \"descr\": \"<u2\"}")));

  EXPECT_EQ(h.dtype, DType::uint16);
  EXPECT_EQ(h.shape, (Shape{4, 5}));
}

TEST(NpyTest, ParseHeaderAcceptsPythonTwoLongExtents) {
  const npy::Header h =
      npy::parse_header(bytes_of(npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }")));

  EXPECT_EQ(h.shape, (Shape{3, 4}));
}

TEST(NpyTest, ParseHeaderAcceptsZeroDAndOneDShapes) {
  EXPECT_EQ(npy::parse_header(bytes_of(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }"))).shape,
            Shape{});
  EXPECT_EQ(npy::parse_header(bytes_of(npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }"))).shape,
            Shape{7});
}

TEST(NpyTest, ParseHeaderReportsBigEndianData) {
  const npy::Header h =
      npy::parse_header(bytes_of(npy_header("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }")));

  EXPECT_EQ(h.dtype, DType::float64);
  EXPECT_TRUE(h.big_endian);
}

TEST(NpyTest, ParseHeaderAcceptsAVersionTwoPreamble) {
  const std::string header = npy_header(kGoodDict, 2);

  EXPECT_EQ(npy::header_length(bytes_of(header)), 12 + kGoodDict.size());
  const npy::Header h = npy::parse_header(bytes_of(header));
  EXPECT_EQ(h.shape, Shape{3});
  EXPECT_EQ(h.data_offset, 12 + kGoodDict.size());
}

TEST(NpyTest, ParseHeaderAcceptsAVersionThreePreamble) {
  const std::string header = npy_header(kGoodDict, 3);

  const npy::Header h = npy::parse_header(bytes_of(header));

  EXPECT_EQ(h.dtype, DType::float64);
  EXPECT_EQ(h.data_offset, 12 + kGoodDict.size());
}

TEST(NpyTest, ParseHeaderIgnoresBytesAfterTheHeader) {
  const std::string header = npy::make_header(DType::uint8, Shape{4});
  const std::string file = header + "\x01\x02\x03\x04";

  const npy::Header h = npy::parse_header(bytes_of(file));

  EXPECT_EQ(h.data_offset, header.size());
  EXPECT_EQ(h.data_bytes, 4u);
}

TEST(NpyTest, ParseHeaderStopsAtTheDeclaredHeaderLength) {
  // The length field says the dict ends after "{'descr': '<f8'": what follows must not be read.
  const std::string buffer = preamble(1, 0, 15) + std::string(kGoodDict);

  EXPECT_TRUE(throws_error([&] { (void)npy::parse_header(bytes_of(buffer), "x.npy"); }, Errc::bad_input,
                           {"x.npy: ", "expected ',' or '}'"}));
}

// ---- preamble errors ------------------------------------------------------------------------

TEST(NpyTest, HeaderLengthFailsOnBadMagic) {
  std::string header = npy::make_header(DType::float64, Shape{3});
  header[1] = 'M';

  EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(header), "x.npy"); }, Errc::bad_input,
                           {"x.npy: ", "bad magic"}));
  EXPECT_TRUE(throws_error([&] { (void)npy::parse_header(bytes_of(header), "x.npy"); }, Errc::bad_input,
                           {"x.npy: ", "bad magic"}));
}

TEST(NpyTest, HeaderLengthFailsOnAPreambleShorterThanEightBytes) {
  const std::string header = npy::make_header(DType::float64, Shape{3});
  for (std::size_t n = 0; n < 8; ++n) {
    EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(header).first(n), "x.npy"); }, Errc::bad_input,
                             {"x.npy: ", "truncated"}))
        << n << " bytes";
  }
}

TEST(NpyTest, HeaderLengthFailsWhenTheLengthFieldIsCutShort) {
  const std::string v1 = npy_header(kGoodDict, 1);
  const std::string v2 = npy_header(kGoodDict, 2);

  for (std::size_t n : {8u, 9u}) {
    EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(v1).first(n), "x.npy"); }, Errc::bad_input,
                             {"x.npy: ", "truncated"}))
        << "v1, " << n << " bytes";
  }
  for (std::size_t n : {8u, 9u, 10u, 11u}) {
    EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(v2).first(n), "x.npy"); }, Errc::bad_input,
                             {"x.npy: ", "truncated"}))
        << "v2, " << n << " bytes";
  }
}

TEST(NpyTest, ParseHeaderFailsWhenTheHeaderIsTruncated) {
  const std::string header = npy::make_header(DType::float64, Shape{3});

  EXPECT_TRUE(throws_error([&] { (void)npy::parse_header(bytes_of(header).first(40), "x.npy"); }, Errc::bad_input,
                           {"x.npy: ", "truncated: header says 128 bytes, only 40 present"}));
}

TEST(NpyTest, HeaderLengthFailsOnAnUnknownVersion) {
  for (const auto& [major, minor] : {std::pair{4, 0}, {0, 0}, {1, 1}, {2, 5}, {255, 0}}) {
    const std::string header = preamble(major, minor, kGoodDict.size()) + std::string(kGoodDict);
    const std::string version = std::to_string(major) + "." + std::to_string(minor);

    EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(header), "x.npy"); }, Errc::bad_input,
                             {"x.npy: ", "unsupported NPY version " + version}))
        << version;
  }
}

TEST(NpyTest, HeaderLengthAcceptsAHeaderOfExactlyTheLimit) {
  const std::string pre = preamble(1, 0, npy::kMaxHeaderBytes);

  EXPECT_EQ(npy::header_length(bytes_of(pre)), 10 + npy::kMaxHeaderBytes);
}

TEST(NpyTest, HeaderLengthFailsOnAHeaderOverTheLimit) {
  for (const auto& [major, len] : {std::pair{1, npy::kMaxHeaderBytes + 1}, {1, std::size_t{0xFFFF}},
                                   {2, std::size_t{70000}}, {3, std::size_t{0xFFFFFFFF}}}) {
    const std::string pre = preamble(major, 0, len);

    EXPECT_TRUE(throws_error([&] { (void)npy::header_length(bytes_of(pre), "x.npy"); }, Errc::bad_input,
                             {"x.npy: ", "header of " + std::to_string(len) + " bytes is larger than the 10000-byte limit"}))
        << "v" << major << " len " << len;
  }
}

// ---- malformed header dicts -----------------------------------------------------------------

TEST(NpyTest, ParseHeaderFailsOnAnEmptyDictText) {
  EXPECT_TRUE(dict_is_refused("", "expected '{'"));
}

TEST(NpyTest, ParseHeaderFailsWhenTheTextIsNotADict) {
  EXPECT_TRUE(dict_is_refused("['descr', 'fortran_order', 'shape']", "expected '{'"));
}

TEST(NpyTest, ParseHeaderFailsWhenAKeyIsMissing) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, }", "must have the keys"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'shape': (3,), }", "must have the keys"));
  EXPECT_TRUE(dict_is_refused("{'fortran_order': False, 'shape': (3,), }", "must have the keys"));
  EXPECT_TRUE(dict_is_refused("{}", "must have the keys"));
}

TEST(NpyTest, ParseHeaderFailsOnAnExtraKey) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1, }",
                              "unexpected key 'extra'"));
}

TEST(NpyTest, ParseHeaderFailsOnADuplicateKey) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'descr': '<i4', 'fortran_order': False, 'shape': (3,), }",
                              "duplicate key 'descr'"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'fortran_order': True, 'shape': (3,), }",
                              "duplicate key 'fortran_order'"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'shape': (4,), }",
                              "duplicate key 'shape'"));
}

TEST(NpyTest, ParseHeaderFailsOnAnUnterminatedString) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8", "unterminated string"));
  EXPECT_TRUE(dict_is_refused("{'descr", "unterminated string"));
  EXPECT_TRUE(dict_is_refused("{'descr': \"<f8', 'fortran_order': False, 'shape': (3,), }", "unterminated string"));
}

TEST(NpyTest, ParseHeaderFailsOnAnUnquotedKey) {
  EXPECT_TRUE(dict_is_refused("{descr: '<f8', 'fortran_order': False, 'shape': (3,), }", "expected a quoted string"));
}

TEST(NpyTest, ParseHeaderFailsOnAMissingColon) {
  EXPECT_TRUE(dict_is_refused("{'descr' '<f8', 'fortran_order': False, 'shape': (3,), }", "expected ':'"));
}

TEST(NpyTest, ParseHeaderFailsOnABadBool) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': false, 'shape': (3,), }", "expected True or False"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': 0, 'shape': (3,), }", "expected True or False"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': Tru", "expected True or False"));
}

TEST(NpyTest, ParseHeaderFailsOnAOneTupleWithoutComma) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (5), }", "trailing comma"));
}

TEST(NpyTest, ParseHeaderFailsOnAShapeThatIsNotATupleOfIntegers) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': [5], }", "expected '('"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (5, x), }", "non-negative integer"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (5,, 3), }", "non-negative integer"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (5 3), }", "expected ',' or ')'"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (5,", "non-negative integer"));
}

TEST(NpyTest, ParseHeaderFailsOnANegativeExtent) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", "non-negative integer"));
}

TEST(NpyTest, ParseHeaderFailsOnGarbageAfterTheDict) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), } x", "trailing characters"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }}", "trailing characters"));
}

TEST(NpyTest, ParseHeaderFailsOnAMissingSeparatorBetweenEntries) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8' 'fortran_order': False, 'shape': (3,), }", "expected ',' or '}'"));
}

TEST(NpyTest, ParseHeaderFailsOnAStructuredDescr) {
  EXPECT_TRUE(dict_is_refused("{'descr': [('a', '<f8'), ('b', '<i4')], 'fortran_order': False, 'shape': (3,), }",
                              "structured dtypes are not supported"));
}

TEST(NpyTest, ParseHeaderFailsOnAnUnsupportedDType) {
  for (const std::string_view descr : {"<c16", "<U4", "|O", "<f2", "|V8", "<M8[ns]"}) {
    const std::string dict =
        "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (3,), }";

    EXPECT_TRUE(dict_is_refused(dict, "unsupported dtype '" + std::string(descr) + "'")) << descr;
  }
}

TEST(NpyTest, ParseHeaderFailsOnAShapeWhoseByteSizeOverflows) {
  // 2^62 x 4 elements overflow int64; 2^60 float64s are 2^63 bytes, one past int64.
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
                              "is too large"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,), }",
                              "shape (1152921504606846976,) is too large"));
}

TEST(NpyTest, ParseHeaderRefusesAnOverflowingShapeWhereverItsZeroExtentIs) {
  for (const std::string_view shape : {"(4611686018427387904, 0, 4611686018427387904)",
                                       "(4611686018427387904, 4611686018427387904, 0)",
                                       "(0, 4611686018427387904, 4611686018427387904)"}) {
    const std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': " + std::string(shape) + ", }";

    EXPECT_TRUE(dict_is_refused(dict, "is too large")) << shape;
  }
}

TEST(NpyTest, ParseHeaderAcceptsExactlyTheShapesNumpyAccepts) {
  constexpr std::int64_t k = 1;
  const std::vector<Shape> shapes = {
      {k << 62, 0, k << 62}, {k << 62, k << 62, 0}, {0, k << 62, k << 62}, {k << 60, 0},   {0, k << 60},
      {k << 59, 0},          {std::numeric_limits<std::int64_t>::max(), 0},               {k << 61, 0, 2}, {k << 61, 0, 4},
      {3037000500, 3037000500, 0},                  {k << 31, k << 31, 0}, {0},            {},
      {k << 62, 2},          {0, 0, 0},             {k << 62, 0, 1, 2}};
  const std::vector<std::string> typestrs = {"|u1", "|b1", "<i4", "<f8"};
  std::string program = "import numpy as np\nfor d, s in [";
  for (const auto& t : typestrs) {
    for (const auto& shape : shapes) program += "('" + t + "', " + format_shape(shape) + "), ";
  }
  // Acceptance is numpy's size check; MemoryError means the shape passed it.
  program += "]:\n  try:\n    np.empty(s, dtype=d); print(1)\n  except MemoryError:\n    print(1)\n"
             "  except ValueError:\n    print(0)\n";

  const auto numpy = testing::run_python(program);

  ASSERT_EQ(numpy.status, 0) << "needs numpy for /usr/bin/python3 (python3-numpy): " << numpy.output;
  std::size_t line = 0;
  for (const auto& t : typestrs) {
    for (const auto& shape : shapes) {
      const std::string dict = "{'descr': '" + t + "', 'fortran_order': False, 'shape': " + format_shape(shape) + ", }";
      const std::string header = npy_header(dict);
      bool ours = true;
      try {
        (void)npy::parse_header(bytes_of(header));
      } catch (const Error&) {
        ours = false;
      }
      ASSERT_LT(2 * line, numpy.output.size()) << numpy.output;
      const bool theirs = numpy.output[2 * line] == '1';
      EXPECT_EQ(ours, theirs) << t << " " << format_shape(shape) << ": tilepool " << (ours ? "accepts" : "refuses")
                              << ", numpy " << (theirs ? "accepts" : "refuses");
      ++line;
    }
  }
}

TEST(NpyTest, ParseHeaderFailsOnAnExtentThatDoesNotFitInt64) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }",
                              "shape extent too large"));
}

TEST(NpyTest, ParseHeaderAcceptsThirtyTwoAxes) {
  const std::string header = npy::make_header(DType::uint8, Shape(32, 1));

  EXPECT_EQ(npy::parse_header(bytes_of(header)).shape.size(), 32u);
}

TEST(NpyTest, ParseHeaderFailsOnMoreThanThirtyTwoAxes) {
  const std::string header = npy::make_header(DType::uint8, Shape(33, 1));

  EXPECT_TRUE(throws_error([&] { (void)npy::parse_header(bytes_of(header), "x.npy"); }, Errc::bad_input,
                           {"x.npy: ", "more than 32 axes"}));
}

TEST(NpyTest, ParseHeaderRefusesFortranOrderWithTwoLongAxes) {
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 4), }",
                              "Fortran-order arrays are not supported"));
  EXPECT_TRUE(dict_is_refused("{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2, 1, 2), }",
                              "Fortran-order arrays are not supported"));
}

TEST(NpyTest, ParseHeaderAcceptsFortranOrderWithAtMostOneLongAxis) {
  for (const std::string_view shape : {"(5,)", "(1, 5, 1)", "()", "(0, 7)", "(1, 1)"}) {
    const std::string dict = "{'descr': '<f8', 'fortran_order': True, 'shape': " + std::string(shape) + ", }";

    EXPECT_NO_THROW((void)npy::parse_header(bytes_of(npy_header(dict)))) << shape;
  }
  const npy::Header h =
      npy::parse_header(bytes_of(npy_header("{'descr': '<f8', 'fortran_order': True, 'shape': (1, 5, 1), }")));
  EXPECT_EQ(h.shape, (Shape{1, 5, 1}));
  EXPECT_EQ(h.data_bytes, 40u);
}

// True if `message` is one line with no byte a terminal could act on.
bool is_one_inert_line(const std::string& message) {
  return std::none_of(message.begin(), message.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7F;
  });
}

// The message parse_header throws for a header made of `dict`, read from `what`.
std::string refusal_of(const std::string& dict, std::string_view what = "x.npy") {
  const std::string header = npy_header(dict);
  try {
    (void)npy::parse_header(bytes_of(header), what);
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(NpyTest, ABadDescrIsEscapedInTheMessage) {
  const std::string message = refusal_of("{'descr': '<f8\r\x1b[2J\x1b]0;owned\x07\xff', 'fortran_order': False, 'shape': (3,), }");

  EXPECT_TRUE(is_one_inert_line(message)) << message;
  EXPECT_NE(message.find("unsupported dtype '<f8\\r\\x1b[2J\\x1b]0;owned\\x07\\xff'"), std::string::npos) << message;
}

TEST(NpyTest, AnUnexpectedKeyIsEscapedInTheMessage) {
  const std::string message = refusal_of("{'\x1b[31mred\r': 1, 'descr': '<f8', 'fortran_order': False, 'shape': (3,), }");

  EXPECT_TRUE(is_one_inert_line(message)) << message;
  EXPECT_NE(message.find("unexpected key '\\x1b[31mred\\r'"), std::string::npos) << message;
}

TEST(NpyTest, TheNameOfTheInputIsEscapedInTheMessage) {
  const std::string message = refusal_of("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", "in\nput\x1b[2J.npy");

  EXPECT_TRUE(is_one_inert_line(message)) << message;
  EXPECT_TRUE(message.starts_with("in\\nput\\x1b[2J.npy: ")) << message;
}

TEST(NpyTest, ReadFileHeaderEscapesAPathWithControlCharacters) {
  TempDir dir;
  const auto path = dir / "bad\r\x1b[2Jname.npy";
  write_bytes(path, "not npy at all");

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input, {"bad\\r\\x1b[2Jname.npy: "}));
  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(dir / "gone\n.npy"); }, Errc::bad_input,
                           {"gone\\n.npy: no such file"}));
}

TEST(NpyTest, ErrorsNameTheInputAsNpyDataByDefault) {
  EXPECT_TRUE(throws_error([] { (void)npy::parse_header(bytes_of(std::string("nope"))); }, Errc::bad_input,
                           {"NPY data: "}));
}

// ---- files ----------------------------------------------------------------------------------

TEST(NpyTest, ReadFileHeaderFailsWhenTheFileIsMissing) {
  TempDir dir;
  const auto path = dir / "missing.npy";

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input,
                           {path.string() + ": ", "no such file"}));
}

TEST(NpyTest, ReadFileHeaderFailsOnADirectory) {
  TempDir dir;

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(dir.path()); }, Errc::bad_input,
                           {dir.path().string() + ": ", "not a regular file"}));
}

TEST(NpyTest, ReadFileHeaderRefusesAFifoWithoutBlocking) {
  TempDir dir;
  const auto path = dir / "pipe.npy";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);

  EXPECT_TRUE(testing::returns_without_blocking(path, [&] {
    return throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input,
                        {path.string() + ": ", "not a regular file"});
  }));
}

TEST(NpyTest, ReadFileHeaderFailsOnAnEmptyFile) {
  TempDir dir;
  const auto path = dir / "empty.npy";
  write_bytes(path, "");

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input, {path.string() + ": ", "truncated"}));
}

TEST(NpyTest, ReadFileHeaderFailsOnAFileThatIsNotNpy) {
  TempDir dir;
  const auto path = dir / "text.npy";
  write_bytes(path, "this is a text file, not an array\n");

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input, {path.string() + ": ", "bad magic"}));
}

TEST(NpyTest, ReadFileHeaderFailsWhenTheHeaderIsTruncated) {
  TempDir dir;
  const auto path = dir / "short.npy";
  write_bytes(path, npy::make_header(DType::float64, Shape{10}).substr(0, 30));

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input,
                           {path.string() + ": ", "truncated: header says 128 bytes, file has 30"}));
}

TEST(NpyTest, ReadFileHeaderFailsWhenTheDataIsTruncated) {
  TempDir dir;
  const auto path = dir / "short.npy";
  write_bytes(path, npy::make_header(DType::float64, Shape{10}) + std::string(40, '\0'));

  EXPECT_TRUE(throws_error([&] { (void)npy::read_file_header(path); }, Errc::bad_input,
                           {path.string() + ": ", "truncated: header says 80 bytes of data, file has 40"}));
}

TEST(NpyTest, ReadFileHeaderReturnsTheHeaderOfACompleteFile) {
  TempDir dir;
  const auto path = dir / "ok.npy";
  write_bytes(path, npy::make_header(DType::int32, Shape{2, 5}) + std::string(40, '\0'));

  const npy::Header h = npy::read_file_header(path);

  EXPECT_EQ(h.dtype, DType::int32);
  EXPECT_EQ(h.shape, (Shape{2, 5}));
  EXPECT_EQ(h.data_offset, 128u);
  EXPECT_EQ(h.data_bytes, 40u);
}

TEST(NpyTest, ReadFileDataCopiesLittleEndianDataUnchanged) {
  TempDir dir;
  const auto path = dir / "le.npy";
  const std::array<std::int32_t, 3> values = {1, -2, 0x01020304};
  std::string data(sizeof(values), '\0');
  std::memcpy(data.data(), values.data(), sizeof(values));
  write_bytes(path, npy::make_header(DType::int32, Shape{3}) + data);
  const npy::Header h = npy::read_file_header(path);
  std::array<std::int32_t, 3> got{};

  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));

  EXPECT_EQ(got, values);
}

TEST(NpyTest, ReadFileDataConvertsBigEndianIntegersToNative) {
  TempDir dir;
  const auto path = dir / "be.npy";
  const std::array<std::int32_t, 3> values = {1, -3, 0x01020304};
  std::string data;
  for (const auto v : values) data += big_endian_bytes(v);
  write_bytes(path, npy_header("{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }") + data);
  const npy::Header h = npy::read_file_header(path);
  std::array<std::int32_t, 3> got{};

  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));

  EXPECT_TRUE(h.big_endian);
  EXPECT_EQ(got, values);
}

TEST(NpyTest, ReadFileDataConvertsBigEndianFloatsToNative) {
  TempDir dir;
  const auto path = dir / "be.npy";
  const std::array<double, 4> values = {1.5, -0.25, 1e300, 3.0};
  std::string data;
  for (const auto v : values) data += big_endian_bytes(v);
  write_bytes(path, npy_header("{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }") + data);
  const npy::Header h = npy::read_file_header(path);
  std::array<double, 4> got{};

  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));

  EXPECT_EQ(got, values);
}

TEST(NpyTest, ReadFileDataConvertsBigEndianUint16ToNative) {
  TempDir dir;
  const auto path = dir / "be.npy";
  const std::array<std::uint16_t, 3> values = {0x0102, 0xFF00, 7};
  std::string data;
  for (const auto v : values) data += big_endian_bytes(v);
  write_bytes(path, npy_header("{'descr': '>u2', 'fortran_order': False, 'shape': (3,), }") + data);
  const npy::Header h = npy::read_file_header(path);
  std::array<std::uint16_t, 3> got{};

  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));

  EXPECT_EQ(got, values);
}

TEST(NpyTest, ReadFileDataFailsWhenTheFileShrankAfterItsHeaderWasRead) {
  TempDir dir;
  const auto path = dir / "shrinks.npy";
  const std::string header = npy::make_header(DType::uint8, Shape{16});
  write_bytes(path, header + std::string(16, 'x'));
  const npy::Header h = npy::read_file_header(path);
  std::filesystem::resize_file(path, header.size() + 6);
  std::array<std::byte, 16> got{};

  EXPECT_TRUE(throws_error([&] { npy::read_file_data(path, h, got); }, Errc::bad_input,
                           {path.string() + ": ", "truncated: header says 16 bytes of data, file has 6"}));
}

TEST(NpyTest, WriteFileWritesAFileThatReadsBack) {
  TempDir dir;
  const auto path = dir / "out.npy";
  const std::array<float, 6> values = {0.5F, 1.5F, -2.0F, 3.25F, 4.0F, 5.0F};

  npy::write_file(path, DType::float32, Shape{2, 3}, std::as_bytes(std::span(values)));

  const npy::Header h = npy::read_file_header(path);
  EXPECT_EQ(h.dtype, DType::float32);
  EXPECT_EQ(h.shape, (Shape{2, 3}));
  std::array<float, 6> got{};
  npy::read_file_data(path, h, std::as_writable_bytes(std::span(got)));
  EXPECT_EQ(got, values);
  const std::string header = npy::make_header(DType::float32, Shape{2, 3});
  EXPECT_EQ(read_bytes(path).substr(0, header.size()), header);
}

TEST(NpyTest, WriteFileRefusesToOverwriteWithoutTheFlag) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "precious");
  const std::array<std::uint8_t, 2> values = {1, 2};

  EXPECT_TRUE(throws_error([&] { npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values))); },
                           Errc::exists, {path.string() + ": ", "already exists"}));
  EXPECT_EQ(read_bytes(path), "precious");
}

TEST(NpyTest, WriteFileRefusalDescribesTheFileNotACommandLineFlag) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "precious");
  const std::array<std::uint8_t, 2> values = {1, 2};

  try {
    npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)));
    FAIL() << "overwrote an existing file";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path.string() + ": already exists");
  }
}

TEST(NpyTest, WriteFileAndReadFileRoundTripAZeroDArray) {
  TempDir dir;
  const auto path = dir / "scalar.npy";
  const double value = 42.5;

  npy::write_file(path, DType::float64, Shape{}, std::as_bytes(std::span(&value, 1)));

  const npy::Header h = npy::read_file_header(path);
  EXPECT_EQ(h.shape, Shape{});
  EXPECT_EQ(h.data_bytes, 8u);
  double got = 0;
  npy::read_file_data(path, h, std::as_writable_bytes(std::span(&got, 1)));
  EXPECT_EQ(got, value);
  const auto numpy = testing::run_python("import numpy as np\na = np.load('" + path.string() +
                                         "')\nassert a.shape == () and a.dtype == np.float64 and a == 42.5, (a.shape, a)");
  EXPECT_EQ(numpy.status, 0) << numpy.output;
}

TEST(NpyTest, WriteFileRefusesToReplaceASymlinkWithoutTheFlag) {
  TempDir dir;
  const auto path = dir / "link.npy";
  std::filesystem::create_symlink(dir / "nowhere", path);
  const std::array<std::uint8_t, 2> values = {1, 2};

  EXPECT_TRUE(throws_error([&] { npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values))); },
                           Errc::exists));
  EXPECT_FALSE(std::filesystem::exists(dir / "nowhere"));
}

TEST(NpyTest, WriteFileOverwritesWithTheFlag) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "old contents");
  const std::array<std::uint8_t, 2> values = {1, 2};

  npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)), /*overwrite=*/true);

  EXPECT_EQ(read_bytes(path), npy::make_header(DType::uint8, Shape{2}) + "\x01\x02");
}

TEST(NpyTest, WriteFileReplacesAtomicallySoOpenReadersKeepTheOldFile) {
  TempDir dir;
  const auto path = dir / "out.npy";
  write_bytes(path, "old contents");
  const int old_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0);
  const std::array<std::uint8_t, 2> values = {1, 2};

  npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)), /*overwrite=*/true);

  std::array<char, 64> buf{};
  const ssize_t n = ::pread(old_fd, buf.data(), buf.size(), 0);
  ::close(old_fd);
  EXPECT_EQ(std::string(buf.data(), static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "old contents");
  EXPECT_EQ(read_bytes(path), npy::make_header(DType::uint8, Shape{2}) + "\x01\x02");
}

TEST(NpyTest, WriteFileLeavesNoTemporaryFileBehind) {
  TempDir dir;
  const auto path = dir / "out.npy";
  const std::array<std::uint8_t, 2> values = {1, 2};

  npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)));
  npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values)), /*overwrite=*/true);
  EXPECT_THROW(npy::write_file(path, DType::uint8, Shape{2}, std::as_bytes(std::span(values))), Error);

  EXPECT_EQ(directory_entries(dir.path()), std::vector<std::string>{"out.npy"});
}

TEST(NpyTest, WriteFileInADirectoryThatDoesNotExistIsBadInputNamingTheFileAndTheDirectory) {
  TempDir dir;
  const auto path = dir / "no" / "such" / "out.npy";
  const std::array<std::uint8_t, 1> values = {1};

  EXPECT_TRUE(throws_error([&] { npy::write_file(path, DType::uint8, Shape{1}, std::as_bytes(std::span(values))); },
                           Errc::bad_input, {path.string() + ": cannot create a file in " + path.parent_path().string()}));
}

TEST(NpyTest, WriteFileOnAFullFilesystemFailsWithNoSpaceAndLeavesNothing) {
  testing::SmallTmpfs fs("1m");
  if (!fs.mounted()) GTEST_SKIP() << fs.why();
  const auto path = fs.path() / "big.npy";
  const std::vector<std::byte> data(std::size_t{2} << 20);

  EXPECT_TRUE(throws_error([&] { npy::write_file(path, DType::uint8, Shape{2 << 20}, data); }, Errc::no_space,
                           {path.string() + ": not enough space in " + fs.path().string()}));
  EXPECT_TRUE(directory_entries(fs.path()).empty());
}

}  // namespace
}  // namespace tilepool
