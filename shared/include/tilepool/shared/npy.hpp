#pragma once
/// @file
/// The NPY file format (numpy's .npy, versions 1.0-3.0): header parsing and writing,
/// and reading/writing whole files. The one place in tilepool that knows the format.

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "tilepool/shared/byte_range.hpp"
#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/shape.hpp"

namespace tilepool::npy {

/// Headers longer than this are refused (numpy's own default max_header_size).
inline constexpr std::size_t kMaxHeaderBytes = 10000;
/// Data offset alignment of the headers tilepool writes (numpy writes 64 too).
inline constexpr std::size_t kDataAlignment = 64;
/// The shortest prefix that tells the header length: magic(6) + version(2) + length(2 or 4).
inline constexpr std::size_t kPreambleBytes = 12;

/// What an NPY header says.
struct Header {
  DType dtype = DType::float64;
  bool big_endian = false;     ///< data bytes are big-endian ('>' typestr)
  Shape shape;
  std::size_t data_offset = 0;  ///< bytes from the file start to the first element
  std::size_t data_bytes = 0;   ///< element count x item size
};

/// How many bytes the whole header occupies (preamble + dict), read from the first bytes of
/// a file. Needs at least kPreambleBytes (or 10 for version 1.0); throws Error(bad_input) for a
/// bad magic, an unknown version, a truncated preamble or a header over kMaxHeaderBytes.
/// `what` (a path or segment name) starts every error message.
std::size_t header_length(std::span<const std::byte> prefix, std::string_view what = "NPY data");

/// Parses a complete header (`bytes` holds at least header_length(bytes) bytes).
/// Throws Error(bad_input) naming what is wrong: malformed dict, unsupported dtype,
/// overflowing shape, too many axes, Fortran order (refused unless at most one axis is longer
/// than 1, where the bytes are the same). Never reads past `bytes`.
Header parse_header(std::span<const std::byte> bytes, std::string_view what = "NPY data");

/// The header tilepool writes for dtype/shape: version 1.0 (2.0 when needed), C order,
/// little-endian, padded so the data starts at a multiple of kDataAlignment.
std::string make_header(DType dtype, std::span<const std::int64_t> shape);

/// Reads just the header of an NPY file, checking that the file holds all the data it
/// announces. `what` names the file in errors.
Header read_file_header(const std::filesystem::path& path);

/// Reads a whole NPY file's data straight into `dest` (dest.size() == header.data_bytes),
/// converting big-endian data in place. No intermediate buffer.
void read_file_data(const std::filesystem::path& path, const Header& header, std::span<std::byte> dest);

/// Reads only `ranges` (byte ranges of the data, within header.data_bytes) of an NPY file's data
/// into the same ranges of `dest` (the whole array's data, dest.size() == header.data_bytes),
/// converting big-endian data in place; the rest of `dest` is not touched. Returns the bytes
/// read. Throws Error(bad_input) for a file shorter than its header says, Error(system).
std::size_t read_file_ranges(const std::filesystem::path& path, const Header& header, std::span<std::byte> dest,
                             std::span<const ByteRange> ranges);

/// Writes an NPY file atomically: to a temporary beside `path`, then rename. Refuses to
/// replace an existing file unless `overwrite`. Throws Error(exists|system|no_space).
void write_file(const std::filesystem::path& path, DType dtype, std::span<const std::int64_t> shape,
                std::span<const std::byte> data, bool overwrite = false);

}  // namespace tilepool::npy
