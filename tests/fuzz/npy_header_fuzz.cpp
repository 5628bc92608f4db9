// libFuzzer target for the NPY header reader (shared/src/npy.cpp), the one place tilepool parses
// untrusted bytes. For any input, npy::header_length and npy::parse_header either return a
// consistent header or throw Error(bad_input); they never crash, never read outside the input
// (ASan), never hit undefined behaviour (UBSan), a header they accept round-trips through
// npy::make_header, and an error message is one line of inert text whatever bytes the input
// holds (bytes from the file are escaped). Built and run by tests/fuzz/CMakeLists.txt.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/npy.hpp"

namespace {

using namespace tilepool;

[[noreturn]] void broken(const char* promise) {
  std::fprintf(stderr, "npy_header_fuzz: broken promise: %s\n", promise);
  std::abort();
}

void require(bool ok, const char* promise) {
  if (!ok) broken(promise);
}

void require_inert_message(const Error& e) {
  for (const char* p = e.what(); *p != '\0'; ++p) {
    const auto b = static_cast<unsigned char>(*p);
    require(b >= 0x20 && b != 0x7F, "error messages hold no control bytes (file bytes are escaped)");
  }
}

std::optional<std::size_t> try_header_length(std::span<const std::byte> bytes) {
  try {
    return npy::header_length(bytes);
  } catch (const Error& e) {
    require(e.code() == Errc::bad_input, "header_length throws only Error(bad_input)");
    require_inert_message(e);
    return std::nullopt;
  }
}

std::optional<npy::Header> try_parse_header(std::span<const std::byte> bytes) {
  try {
    return npy::parse_header(bytes);
  } catch (const Error& e) {
    require(e.code() == Errc::bad_input, "parse_header throws only Error(bad_input)");
    require_inert_message(e);
    return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);

  const auto length = try_header_length(bytes);
  if (length) {
    require(*length >= 10 && *length <= 12 + npy::kMaxHeaderBytes, "header_length is preamble + at most the limit");
  }

  const auto header = try_parse_header(bytes);
  if (!header) return 0;
  require(length.has_value(), "parse_header accepts only what header_length accepts");
  require(header->data_offset == *length && header->data_offset <= size, "data_offset is the header length, inside the input");
  require(header->shape.size() <= static_cast<std::size_t>(kMaxDims), "at most kMaxDims axes");
  const auto data_bytes = byte_count(header->shape, dtype_size(header->dtype));
  require(data_bytes.has_value() && *data_bytes == header->data_bytes, "data_bytes is the shape's byte count");
  require(!header->big_endian || dtype_size(header->dtype) > 1, "only multi-byte dtypes are big-endian");

  // What tilepool would write for this array must parse back to the same array.
  const std::string again = npy::make_header(header->dtype, header->shape);
  require(again.size() % npy::kDataAlignment == 0, "make_header aligns the data");
  const auto reparsed = try_parse_header(std::as_bytes(std::span(again)));
  require(reparsed.has_value(), "make_header output parses");
  require(reparsed->dtype == header->dtype && reparsed->shape == header->shape && !reparsed->big_endian &&
              reparsed->data_bytes == header->data_bytes && reparsed->data_offset == again.size(),
          "make_header round-trips");
  return 0;
}
