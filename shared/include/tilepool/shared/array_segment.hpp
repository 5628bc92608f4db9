#pragma once
/// @file
/// Data segments: N-D arrays stored as NPY files in shared memory.

#include <filesystem>
#include <functional>
#include <optional>
#include <memory>
#include <string>

#include "tilepool/shared/array_view.hpp"
#include "tilepool/shared/npy.hpp"
#include "tilepool/shared/segment.hpp"

namespace tilepool {

/// A segment whose bytes are a valid NPY file (C order, little-endian, data 64-byte
/// aligned): numpy.load('/dev/shm/NAME', mmap_mode='r+') sees the array without a copy,
/// and a file that numpy.save wrote into /dev/shm attaches by name alone. Move-only;
/// creator removes, attacher never does (see Segment).
class ArraySegment {
 public:
  /// Creates a zero-filled array segment. Throws as Segment::create, or Error(usage) for
  /// a shape whose byte size overflows.
  static ArraySegment create(std::string name, DType dtype, const Shape& shape,
                             const Backing& backing = {}, MapOptions options = {});
  /// A zero-filled array segment of full size whose data is reserved only in `data_ranges`
  /// (byte ranges of the data, not of the segment; the header is always reserved): a sparse
  /// segment (MapOptions::reserve_only) for a node that holds only its share of an array.
  /// Throws as create.
  static ArraySegment create_sparse(std::string name, DType dtype, const Shape& shape, std::span<const ByteRange> data_ranges,
                                    const Backing& backing = {});
  /// Attaches an existing array segment by name; checks owner, NPY header and that the size
  /// covers header + data. Throws Error(bad_input) naming what is wrong.
  static ArraySegment attach(std::string name, const Backing& backing = {}, MapOptions options = {});
  /// Reads an NPY file into a new segment with one read() of its data (no intermediate
  /// buffer). Throws Error(bad_input) for a bad file and leaves no segment behind.
  static ArraySegment load_npy(const std::filesystem::path& path, std::string name,
                               const Backing& backing = {});

  /// Maps an NPY file in place, read-only, when its data needs no conversion (little-endian,
  /// C order, elements aligned: what numpy.save writes): nothing is copied, workers attach the
  /// file itself (Segment::open_file) and a file larger than RAM works. nullopt when the file
  /// must be converted (big-endian data, misaligned elements): load_npy it instead. Throws
  /// Error(bad_input) for a file that is not valid NPY or holds less data than its header says.
  static std::optional<ArraySegment> map_npy_file(const std::filesystem::path& path);
  /// A zero-filled NPY file of `dtype` and `shape` being made for `path`: unnamed, or under a
  /// hidden temporary name, in path's directory until publish_npy_file()
  /// (Segment::create_pending_file; `publish` says whether it may replace an existing file and
  /// whether it needs a name others can open). Throws as Segment::create_pending_file, or
  /// Error(usage) as create().
  static ArraySegment create_npy_file(const std::filesystem::path& path, DType dtype, const Shape& shape,
                                      const PublishOptions& publish = {});
  /// Gives a create_npy_file() array the name `path`, the one it was created for
  /// (Segment::publish_file).
  void publish_npy_file(const std::filesystem::path& path, bool replace);

  /// Writes the array to an NPY file (atomically; see npy::write_file).
  void save_npy(const std::filesystem::path& path, bool overwrite = false) const;

  [[nodiscard]] DType dtype() const noexcept { return header_.dtype; }
  [[nodiscard]] const Shape& shape() const noexcept { return header_.shape; }
  [[nodiscard]] std::byte* data() const noexcept { return segment_.data() + header_.data_offset; }
  [[nodiscard]] std::size_t data_bytes() const noexcept { return header_.data_bytes; }
  [[nodiscard]] const npy::Header& header() const noexcept { return header_; }
  [[nodiscard]] Segment& segment() noexcept { return segment_; }
  [[nodiscard]] const Segment& segment() const noexcept { return segment_; }
  [[nodiscard]] const std::string& name() const noexcept { return segment_.name(); }

  /// An untyped view that keeps the mapping alive.
  [[nodiscard]] AnyArray array() const;
  /// A typed view; throws Error(bad_input) if T is not the segment's dtype.
  template <class T>
  [[nodiscard]] ArrayView<T> view() const { return array().as<T>(); }

 private:
  ArraySegment(Segment segment, npy::Header header);
  /// The array a mapped segment holds, its header checked as attach() documents.
  static ArraySegment from_mapped(Segment segment, const std::string& what);
  /// A mapped segment of header + data bytes, the header written in.
  static ArraySegment with_header(DType dtype, const Shape& shape,
                                  const std::function<Segment(std::size_t bytes)>& make_segment);

  Segment segment_;
  npy::Header header_;
};

}  // namespace tilepool
