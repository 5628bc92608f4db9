#include "tilepool/shared/array_segment.hpp"

#include <fcntl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "detail/fd.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/fault_guard.hpp"

namespace tilepool {

ArraySegment::ArraySegment(Segment segment, npy::Header header) : segment_(std::move(segment)), header_(std::move(header)) {}

ArraySegment ArraySegment::with_header(DType dtype, const Shape& shape,
                                       const std::function<Segment(std::size_t bytes)>& make_segment) {
  if (shape.size() > static_cast<std::size_t>(kMaxDims)) {
    throw Error(Errc::usage, fmt::format("shape {} has {} axes; at most {} are supported", format_shape(shape),
                                         shape.size(), kMaxDims));
  }
  if (std::any_of(shape.begin(), shape.end(), [](std::int64_t e) { return e < 0; })) {
    throw Error(Errc::usage, fmt::format("shape {} has a negative extent (expected extents >= 0)", format_shape(shape)));
  }
  const auto data_bytes = byte_count(shape, dtype_size(dtype));
  if (!data_bytes) {
    throw Error(Errc::usage, fmt::format("shape {} is too large for {}: its byte size overflows a signed 64-bit size",
                                         format_shape(shape), dtype_name(dtype)));
  }
  const std::string header_text = npy::make_header(dtype, shape);
  // A 0-byte array still needs a mapping: the header is never empty.
  Segment seg = make_segment(header_text.size() + *data_bytes);
  // A mapped file's page may fail to come in (a FUSE or network filesystem's I/O error): an Error, not SIGBUS.
  guard_faults([&] { std::memcpy(seg.data(), header_text.data(), header_text.size()); });
  seg.sync_data();  // a store that cannot take the header fails now, not when a worker reads zeros
  npy::Header h = npy::parse_header(std::as_bytes(std::span(header_text)));
  return ArraySegment(std::move(seg), std::move(h));
}

ArraySegment ArraySegment::create(std::string name, DType dtype, const Shape& shape, const Backing& backing,
                                  MapOptions options) {
  return with_header(dtype, shape, [&](std::size_t bytes) { return Segment::create(std::move(name), bytes, backing, options); });
}

ArraySegment ArraySegment::create_npy_file(const std::filesystem::path& path, DType dtype, const Shape& shape,
                                           const PublishOptions& publish) {
  // Not pre-faulted: each page is touched first by the worker that writes it.
  return with_header(dtype, shape, [&](std::size_t bytes) {
    return Segment::create_pending_file(path, bytes, publish, MapOptions{.populate = false});
  });
}

void ArraySegment::publish_npy_file(const std::filesystem::path& path, bool replace) {
  TILEPOOL_CHECK(segment_.pending_file() != nullptr && segment_.pending_file()->target() == path);
  segment_.publish_file(replace);
}

ArraySegment ArraySegment::create_sparse(std::string name, DType dtype, const Shape& shape,
                                         std::span<const ByteRange> data_ranges, const Backing& backing) {
  const std::size_t header_bytes = npy::make_header(dtype, shape).size();
  std::vector<ByteRange> reserve{ByteRange{0, header_bytes}};
  for (const ByteRange& r : data_ranges) reserve.push_back(ByteRange{header_bytes + r.offset, r.length});
  return create(std::move(name), dtype, shape, backing, MapOptions{.populate = false, .reserve_only = std::move(reserve)});
}

ArraySegment ArraySegment::attach(std::string name, const Backing& backing, MapOptions options) {
  Segment seg = Segment::attach(std::move(name), backing, options, /*min_size=*/0);
  const std::string what = fmt::format("segment '{}'", seg.name());
  return from_mapped(std::move(seg), what);
}

std::optional<ArraySegment> ArraySegment::map_npy_file(const std::filesystem::path& path) {
  const npy::Header h = npy::read_file_header(path);
  if (h.big_endian || h.data_offset % dtype_size(h.dtype) != 0) return std::nullopt;
  // Not pre-faulted: a worker maps the pages of the tiles it runs, and the file's page cache
  // is shared by every process that maps it.
  return from_mapped(Segment::open_file(path, MapOptions{.populate = false, .read_only = true}),
                     escape_for_message(path.string()));
}

ArraySegment ArraySegment::from_mapped(Segment seg, const std::string& what) {
  // Parse a copy of the header bytes, taken under a fault guard: a segment truncated since
  // it was opened is then an error, not a SIGBUS.
  std::vector<std::byte> head(std::min(seg.size(), npy::kPreambleBytes + npy::kMaxHeaderBytes));
  guard_faults([&] { std::memcpy(head.data(), seg.data(), head.size()); });
  npy::Header h = npy::parse_header(head, what);
  if (h.big_endian) {
    throw Error(Errc::bad_input,
                fmt::format("{}: big-endian data cannot be shared in place (expected little-endian; use a .npy file input)", what));
  }
  if (h.data_offset % dtype_size(h.dtype) != 0) {
    throw Error(Errc::bad_input, fmt::format("{}: data offset {} is not aligned to the {}-byte element size", what,
                                             h.data_offset, dtype_size(h.dtype)));
  }
  if (seg.size() - h.data_offset < h.data_bytes) {
    throw Error(Errc::bad_input, fmt::format("{}: truncated: header says {} bytes of data, segment has {}", what,
                                             h.data_bytes, seg.size() - h.data_offset));
  }
  return ArraySegment(std::move(seg), std::move(h));
}

ArraySegment ArraySegment::load_npy(const std::filesystem::path& path, std::string name, const Backing& backing) {
  const npy::Header h = npy::read_file_header(path);
  if (h.big_endian) {
    // Converted while it is read: one read() into the mapping, then swapped in place.
    ArraySegment out = create(std::move(name), h.dtype, h.shape, backing, MapOptions{.populate = false});
    npy::read_file_data(path, h, std::span(out.data(), out.data_bytes()));
    return out;
  }
  // As it is: sized, not reserved, and filled inside the kernel, so each page is written once
  // (posix_fallocate would zero every page first) and never faulted in this process. Only the
  // header, written through the mapping, is reserved first: on a full store its page would
  // fault (SIGBUS) instead of failing the reservation.
  const std::size_t header_bytes = npy::make_header(h.dtype, h.shape).size();
  ArraySegment out = create(std::move(name), h.dtype, h.shape, backing,
                            MapOptions{.populate = false, .reserve = false, .reserve_only = std::vector{ByteRange{0, header_bytes}}});
  detail::UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) throw Error(Errc::bad_input, fmt::format("{}: cannot open: {}", escape_for_message(path.string()), std::strerror(errno)));
  out.segment_.copy_from(file.get(), h.data_offset, out.header_.data_offset, h.data_bytes);
  return out;
}

void ArraySegment::save_npy(const std::filesystem::path& path, bool overwrite) const {
  npy::write_file(path, dtype(), shape(), std::span<const std::byte>(data(), data_bytes()), overwrite);
}

AnyArray ArraySegment::array() const { return AnyArray(segment_.mapping(), data(), dtype(), shape()); }

}  // namespace tilepool
