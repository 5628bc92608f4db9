#include "tilepool/shared/npy.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/shared/publish.hpp"

namespace tilepool::npy {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

// Swaps each `item`-byte element of `bytes` (whole elements) from big- to little-endian.
void to_little_endian(std::span<std::byte> bytes, std::size_t item) noexcept {
  for (std::size_t off = 0; off + item <= bytes.size(); off += item) {
    std::byte* p = bytes.data() + off;
    for (std::size_t i = 0; i < item / 2; ++i) std::swap(p[i], p[item - 1 - i]);
  }
}

// `what` (a path or segment name) and every piece of the file quoted in `message` may hold any
// byte: they are escaped so that the message stays one printable line.
[[noreturn]] void fail(std::string_view what, std::string_view message) {
  throw Error(Errc::bad_input, fmt::format("{}: {}", escape_for_message(what), message));
}

Error system_failure(std::string_view what, std::string_view doing, int err) {
  return system_error(fmt::format("{}: {}", escape_for_message(what), doing), err);
}

std::uint32_t load_le(const std::byte* p, int n) {
  std::uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

// A recursive-descent reader for the Python dict literal in an NPY header, e.g.
// {'descr': '<f8', 'fortran_order': False, 'shape': (365, 16, 16), }
// It accepts exactly what numpy writes (and what numpy's safe_eval would accept for these
// three keys) and never reads outside `text`.
class DictParser {
 public:
  DictParser(std::string_view text, std::string_view what) : text_(text), what_(what) {}

  struct Result {
    std::string descr;
    bool fortran_order = false;
    Shape shape;
  };

  Result parse() {
    Result r;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() == '[') fail(what_, "structured dtypes are not supported (expected a plain numeric dtype)");
        r.descr = string_literal();
        have_descr = !std::exchange(have_descr, true) || bad("duplicate key 'descr'");
      } else if (key == "fortran_order") {
        r.fortran_order = boolean();
        have_order = !std::exchange(have_order, true) || bad("duplicate key 'fortran_order'");
      } else if (key == "shape") {
        r.shape = tuple();
        have_shape = !std::exchange(have_shape, true) || bad("duplicate key 'shape'");
      } else {
        bad(fmt::format("unexpected key '{}' (expected descr, fortran_order, shape)", escape_for_message(key)));
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++pos_;  // '}'
    skip_ws();
    if (pos_ != text_.size()) bad("trailing characters after the header dict");
    if (!have_descr || !have_order || !have_shape) {
      bad("header dict must have the keys 'descr', 'fortran_order' and 'shape'");
    }
    return r;
  }

 private:
  [[noreturn]] bool bad(const std::string& message) {
    fail(what_, fmt::format("malformed header: {} at offset {}", message, pos_));
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) bad(fmt::format("expected '{}'", c));
    ++pos_;
  }
  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    ++pos_;
    const std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' || text_[pos_] == '\n') bad("unsupported character in string");
      ++pos_;
    }
    if (pos_ >= text_.size()) bad("unterminated string");
    std::string s(text_.substr(start, pos_ - start));
    ++pos_;
    return s;
  }
  bool boolean() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::int64_t integer() {
    if (peek() < '0' || peek() > '9') bad("expected a non-negative integer");
    std::int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10) bad("shape extent too large");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 longs, as old numpy wrote them
    return v;
  }
  Shape tuple() {
    expect('(');
    Shape shape;
    skip_ws();
    if (peek() == ')') {
      ++pos_;
      return shape;
    }
    for (;;) {
      skip_ws();
      if (peek() == ')') break;  // trailing comma
      shape.push_back(integer());
      if (shape.size() > static_cast<std::size_t>(kMaxDims)) {
        bad(fmt::format("more than {} axes", kMaxDims));
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') bad("expected ',' or ')' in shape");
      // A single element needs a trailing comma in Python: "(5)" is an int, not a tuple.
      if (shape.size() == 1) bad("a 1-tuple needs a trailing comma, as in (5,)");
      break;
    }
    ++pos_;
    return shape;
  }

  std::string_view text_;
  std::string_view what_;
  std::size_t pos_ = 0;
};

}  // namespace

std::size_t header_length(std::span<const std::byte> prefix, std::string_view what) {
  if (prefix.size() < 8) fail(what, "truncated: shorter than an NPY preamble (8 bytes)");
  if (std::memcmp(prefix.data(), kMagic.data(), kMagic.size()) != 0) {
    fail(what, "not an NPY file (bad magic; expected \\x93NUMPY)");
  }
  const auto major = static_cast<unsigned>(prefix[6]);
  const auto minor = static_cast<unsigned>(prefix[7]);
  if (major < 1 || major > 3 || minor != 0) {
    fail(what, fmt::format("unsupported NPY version {}.{} (expected 1.0, 2.0 or 3.0)", major, minor));
  }
  const std::size_t fixed = major == 1 ? 10 : 12;
  if (prefix.size() < fixed) fail(what, "truncated: the NPY preamble is cut short");
  const std::size_t len = load_le(prefix.data() + 8, major == 1 ? 2 : 4);
  if (len > kMaxHeaderBytes) {
    fail(what, fmt::format("header of {} bytes is larger than the {}-byte limit", len, kMaxHeaderBytes));
  }
  return fixed + len;
}

Header parse_header(std::span<const std::byte> bytes, std::string_view what) {
  const std::size_t total = header_length(bytes, what);
  if (bytes.size() < total) {
    fail(what, fmt::format("truncated: header says {} bytes, only {} present", total, bytes.size()));
  }
  const std::size_t fixed = static_cast<unsigned>(bytes[6]) == 1 ? 10 : 12;
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + fixed, total - fixed);
  const auto dict = DictParser(text, what).parse();

  const auto ts = parse_typestr(dict.descr);
  if (!ts) {
    fail(what, fmt::format("unsupported dtype '{}' (expected one of bool, int8-64, uint8-64, float32, float64)",
                           escape_for_message(dict.descr)));
  }
  Header h;
  h.dtype = ts->dtype;
  h.big_endian = ts->big_endian;
  h.shape = dict.shape;
  // Column-major bytes equal row-major ones when at most one axis is longer than 1.
  int long_axes = 0;
  for (const auto e : h.shape) long_axes += e > 1 ? 1 : 0;
  if (dict.fortran_order && long_axes > 1) {
    fail(what, "Fortran-order arrays are not supported (expected C order; save np.ascontiguousarray(a))");
  }
  const auto bytes_needed = byte_count(h.shape, dtype_size(h.dtype));
  if (!bytes_needed) {
    // numpy's rule (see byte_count): numpy refuses to make this array, so tilepool does too.
    fail(what, fmt::format("shape {} is too large for {}: its byte size overflows a signed 64-bit size",
                           format_shape(h.shape), dtype_name(h.dtype)));
  }
  h.data_offset = total;
  h.data_bytes = *bytes_needed;
  return h;
}

std::string make_header(DType dtype, std::span<const std::int64_t> shape) {
  std::string dict = "{'descr': '";
  dict += dtype_typestr(dtype);
  dict += "', 'fortran_order': False, 'shape': ";
  dict += format_shape(shape);
  dict += ", }";
  // Pad with spaces and end with '\n' so preamble + dict is a multiple of the alignment.
  std::size_t fixed = 10;
  std::size_t total = (fixed + dict.size() + 1 + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  if (total - fixed > 0xFFFF) {
    fixed = 12;
    total = (fixed + dict.size() + 1 + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  }
  const std::size_t len = total - fixed;
  std::string out(kMagic);
  out += static_cast<char>(fixed == 10 ? 1 : 2);
  out += '\0';
  for (std::size_t i = 0; i < fixed - 8; ++i) out += static_cast<char>((len >> (8 * i)) & 0xFF);
  out += dict;
  out.append(total - out.size() - 1, ' ');
  out += '\n';
  return out;
}

Header read_file_header(const std::filesystem::path& path) {
  const std::string what = path.string();
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the S_ISREG check below refuses it.
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) fail(what, "no such file (expected an .npy file)");
    throw Error(err == EACCES ? Errc::bad_input : Errc::system,
                fmt::format("{}: cannot open: {}", escape_for_message(what), std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw system_failure(what, "fstat", errno);
  if (!S_ISREG(st.st_mode)) fail(what, "not a regular file (expected an .npy file)");

  std::vector<std::byte> buf(kPreambleBytes);
  long n = detail::read_full(fd.get(), buf, 0);
  if (n < 0) throw system_failure(what, "read", errno);
  buf.resize(static_cast<std::size_t>(n));
  const std::size_t total = header_length(buf, what);
  buf.resize(total);
  n = detail::read_full(fd.get(), buf, 0);
  if (n < 0) throw system_failure(what, "read", errno);
  if (static_cast<std::size_t>(n) < total) {
    fail(what, fmt::format("truncated: header says {} bytes, file has {}", total, n));
  }
  Header h = parse_header(buf, what);
  const auto file_size = static_cast<std::size_t>(st.st_size);
  if (file_size - h.data_offset < h.data_bytes) {
    fail(what, fmt::format("truncated: header says {} bytes of data, file has {}", h.data_bytes,
                           file_size < h.data_offset ? 0 : file_size - h.data_offset));
  }
  return h;
}

void read_file_data(const std::filesystem::path& path, const Header& header, std::span<std::byte> dest) {
  const std::string what = path.string();
  TILEPOOL_CHECK(dest.size() == header.data_bytes);
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw system_failure(what, "cannot open", errno);
  const long n = detail::read_full(fd.get(), dest, static_cast<long long>(header.data_offset));
  if (n < 0) throw system_failure(what, "read", errno);
  if (static_cast<std::size_t>(n) != dest.size()) {
    fail(what, fmt::format("truncated: header says {} bytes of data, file has {}", dest.size(), n));
  }
  if (header.big_endian) to_little_endian(dest, dtype_size(header.dtype));
}

std::size_t read_file_ranges(const std::filesystem::path& path, const Header& header, std::span<std::byte> dest,
                             std::span<const ByteRange> ranges) {
  const std::string what = path.string();
  TILEPOOL_CHECK(dest.size() == header.data_bytes);
  detail::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw system_failure(what, "cannot open", errno);
  std::size_t total = 0;
  for (const ByteRange& r : ranges) {
    TILEPOOL_CHECK(r.offset + r.length <= dest.size());
    const std::span<std::byte> part = dest.subspan(r.offset, r.length);
    const long n = detail::read_full(fd.get(), part, static_cast<long long>(header.data_offset + r.offset));
    if (n < 0) throw system_failure(what, "read", errno);
    if (static_cast<std::size_t>(n) != r.length) {
      fail(what, fmt::format("truncated: header says {} bytes of data, file ends {} bytes into it", dest.size(), r.offset + n));
    }
    if (header.big_endian) to_little_endian(part, dtype_size(header.dtype));
    total += r.length;
  }
  return total;
}

void write_file(const std::filesystem::path& path, DType dtype, std::span<const std::int64_t> shape,
                std::span<const std::byte> data, bool overwrite) {
  const std::string what = path.string();
  const auto expected = byte_count(shape, dtype_size(dtype));
  TILEPOOL_CHECK(expected && *expected == data.size());
  std::error_code ec;
  if (!overwrite && std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    throw Error(Errc::exists, fmt::format("{}: already exists", escape_for_message(what)));
  }
  // Built with no name (or a hidden temporary one) beside `path`, then published in one step.
  PendingFile file = PendingFile::create(path, PublishOptions{.replace = overwrite});
  const std::string header = make_header(dtype, shape);
  file.allocate(header.size() + data.size());  // a full filesystem fails here, naming `path` and its directory
  if (!detail::write_full(file.fd(), std::as_bytes(std::span(header)))) throw system_failure(what, "write", errno);
  // A piece at a time, looking at the user's stop between (a GiB takes a second or more), and
  // once more before publishing: nothing is published after Ctrl-C.
  for (std::size_t at = 0; at < data.size(); at += kStopCheckBytes) {
    throw_if_interrupted();
    if (!detail::write_full(file.fd(), data.subspan(at, std::min(kStopCheckBytes, data.size() - at)))) {
      throw system_failure(what, "write", errno);
    }
  }
  throw_if_interrupted();
  file.publish(overwrite);
}

}  // namespace tilepool::npy
