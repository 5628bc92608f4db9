#pragma once
/// @file
/// Views of N-D arrays in shared memory: untyped (AnyArray), typed (ArrayView<T>) and
/// Eigen views of tiles (TileView<T>, a stack of 2-D row-major planes).

#include <Eigen/Core>
#include <cstddef>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "tilepool/shared/dtype.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/shape.hpp"
#include "tilepool/shared/tiling.hpp"

namespace tilepool {

template <class T> class ArrayView;

/// The Error(bad_input) for viewing an array of `actual` elements as `requested` ones.
[[nodiscard]] Error dtype_mismatch(DType actual, DType requested);
/// The error for a view of `box` asked of a window that holds only `window` (ArrayView::tile)
/// of input `input` (0-based; kOutputWindow: of the output).
[[nodiscard]] Error outside_window(const Box& box, const Box& window, int input);

/// AnyArray::window's `input` for a window of the job's output.
inline constexpr int kOutputWindow = -1;

/// An untyped C-order array that keeps its memory alive (`owner` is usually a Mapping).
/// Copies share ownership. Reading is thread/process-safe; writers must use disjoint tiles.
class AnyArray {
 public:
  AnyArray() = default;
  AnyArray(std::shared_ptr<const void> owner, std::byte* data, DType dtype, Shape shape)
      : owner_(std::move(owner)), data_(data), dtype_(dtype), shape_(std::move(shape)) {}

  /// A window onto an array of `shape` of which only `region` is in memory: `data` holds the
  /// region's elements packed in C order. Views of it take the full array's coordinates, so a
  /// kernel indexes it as it would the whole array, but may touch only elements in `region`
  /// (copy mode hands a kernel the regions it declared it reads). `input` (0-based, or
  /// kOutputWindow) is which of the job's arrays it is, for the error of a read outside it.
  static AnyArray window(std::shared_ptr<const void> owner, std::byte* data, DType dtype, Shape shape, const Box& region,
                         int input) {
    AnyArray a(std::move(owner), data, dtype, std::move(shape));
    a.region_ = region;
    a.windowed_ = true;
    a.window_input_ = input;
    return a;
  }

  [[nodiscard]] DType dtype() const noexcept { return dtype_; }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] int ndim() const noexcept { return static_cast<int>(shape_.size()); }
  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::int64_t size() const noexcept { return element_count(shape_).value_or(0); }
  /// Bytes in memory: the whole array's, or the region's for a window.
  [[nodiscard]] std::size_t bytes() const noexcept {
    const std::int64_t n = windowed_ ? region_.element_count() : size();
    return static_cast<std::size_t>(n) * dtype_size(dtype_);
  }
  [[nodiscard]] const std::shared_ptr<const void>& owner() const noexcept { return owner_; }
  /// True for a window (see window()).
  [[nodiscard]] bool is_window() const noexcept { return windowed_; }

  /// A typed view; throws Error(bad_input) if T (without const) is not dtype().
  template <class T>
  [[nodiscard]] ArrayView<T> as() const {
    if (dtype_of_v<std::remove_const_t<T>> != dtype_) throw dtype_mismatch(dtype_, dtype_of_v<std::remove_const_t<T>>);
    return ArrayView<T>(owner_, reinterpret_cast<T*>(data_), shape_, windowed_ ? &region_ : nullptr, window_input_);
  }

 private:
  std::shared_ptr<const void> owner_;
  std::byte* data_ = nullptr;
  DType dtype_ = DType::float64;
  Shape shape_;
  Box region_;
  bool windowed_ = false;
  int window_input_ = kOutputWindow;
};

/// Eigen types for tile planes: a row-major dynamic matrix mapped with an outer (row) stride.
template <class T>
struct PlaneTypes {
  using Scalar = std::remove_const_t<T>;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Matrix, Matrix>, Eigen::Unaligned, Eigen::OuterStride<>>;
};

/// The Eigen view of a tile: its 2-D planes over the last two axes, one plane per index of
/// the leading axes (a 1-D tile is one 1-row plane; a 0-d one a 1x1 plane). Borrows from the
/// ArrayView that made it: it is only made from an lvalue ArrayView and must not outlive it.
/// Writing through a plane writes the segment.
template <class T>
class TileView {
 public:
  using Plane = typename PlaneTypes<T>::Map;

  /// `origin` holds the element whose strided index is `base` (0 unless the view is a window).
  TileView(T* origin, const std::int64_t* strides, const Box& box, std::int64_t base = 0) noexcept
      : origin_(origin), strides_(strides), box_(box), base_(base) {
    const int lead = box_.ndim > 2 ? box_.ndim - 2 : 0;
    planes_ = 1;
    for (int a = 0; a < lead; ++a) planes_ *= box_.extent(a);
    rows_ = box_.ndim >= 2 ? box_.extent(box_.ndim - 2) : 1;
    cols_ = box_.ndim >= 1 ? box_.extent(box_.ndim - 1) : 1;
    row_stride_ = box_.ndim >= 2 ? strides_[box_.ndim - 2] : cols_;
  }

  [[nodiscard]] const Box& box() const noexcept { return box_; }
  [[nodiscard]] std::int64_t plane_count() const noexcept { return planes_; }
  [[nodiscard]] std::int64_t rows() const noexcept { return rows_; }
  [[nodiscard]] std::int64_t cols() const noexcept { return cols_; }

  /// Plane `p` (0 <= p < plane_count()), in C order over the leading axes.
  [[nodiscard]] Plane plane(std::int64_t p) const noexcept {
    // Offset of the plane's first element: decompose p over the leading extents.
    std::int64_t offset = -base_;
    for (int a = box_.ndim - 3; a >= 0; --a) {
      const std::int64_t e = box_.extent(a);
      offset += (box_.lo[static_cast<std::size_t>(a)] + p % e) * strides_[a];
      p /= e;
    }
    for (int a = std::max(box_.ndim - 2, 0); a < box_.ndim; ++a) offset += box_.lo[static_cast<std::size_t>(a)] * strides_[a];
    return Plane(origin_ + offset, rows_, cols_, Eigen::OuterStride<>(row_stride_));
  }

 private:
  T* origin_;
  const std::int64_t* strides_;
  Box box_;
  std::int64_t base_ = 0;
  std::int64_t planes_ = 1, rows_ = 1, cols_ = 1, row_stride_ = 1;
};

/// A typed N-D C-order array view that keeps its mapping alive (copies share it).
/// T may be const for read-only use. Safe to share across threads; concurrent writers must
/// touch disjoint tiles.
template <class T>
class ArrayView {
 public:
  using Plane = typename PlaneTypes<T>::Map;

  ArrayView() = default;
  /// A view of the C-order array `shape` at `data`; with a `window`, of that region of it only
  /// (see AnyArray::window, and its `input`): indices stay the full array's.
  ArrayView(std::shared_ptr<const void> owner, T* data, Shape shape, const Box* window = nullptr, int window_input = kOutputWindow)
      : owner_(std::move(owner)), data_(data), shape_(std::move(shape)), strides_(shape_.size()), window_input_(window_input) {
    if (window != nullptr) window_ = *window;
    std::int64_t s = 1;
    for (std::size_t a = shape_.size(); a-- > 0;) {
      strides_[a] = s;
      s *= window != nullptr ? window->extent(static_cast<int>(a)) : shape_[a];
      if (window != nullptr) base_ += window->lo[a] * strides_[a];
    }
  }
  /// A read-only view of the same array.
  operator ArrayView<const T>() const {  // NOLINT(google-explicit-constructor)
    return ArrayView<const T>(owner_, data_, shape_, window_ ? &*window_ : nullptr, window_input_);
  }

  [[nodiscard]] T* data() const noexcept { return data_; }
  [[nodiscard]] const Shape& shape() const noexcept { return shape_; }
  [[nodiscard]] int ndim() const noexcept { return static_cast<int>(shape_.size()); }
  [[nodiscard]] std::int64_t size() const noexcept { return element_count(shape_).value_or(0); }
  /// Elements between neighbours along `axis`.
  [[nodiscard]] std::int64_t stride(int axis) const noexcept { return strides_[static_cast<std::size_t>(axis)]; }
  /// The element at `index` (one coordinate per axis). For a window, throws Error(job_failed)
  /// if `index` is outside the region it holds, as tile() does.
  [[nodiscard]] T& at(std::span<const std::int64_t> index) const {
    if (window_) {
      Box point;
      point.ndim = static_cast<int>(index.size());
      for (std::size_t a = 0; a < index.size() && a < point.lo.size(); ++a) {
        point.lo[a] = index[a];
        point.hi[a] = index[a] + 1;
      }
      check_inside_window(point);
    }
    std::int64_t off = 0;
    for (std::size_t a = 0; a < index.size(); ++a) off += index[a] * strides_[a];
    return data_[off - base_];
  }

  /// An Eigen view of one tile. Only callable on an lvalue, so the tile cannot outlive a
  /// temporary ArrayView: keep the ArrayView alive while you use the TileView. For a window,
  /// throws Error(job_failed) if `box` reaches outside the region it holds (a kernel that reads
  /// beyond the input region it declared, in copy mode) instead of viewing other memory.
  [[nodiscard]] TileView<T> tile(const Box& box) const& {
    if (window_) check_inside_window(box);
    return TileView<T>(data_, strides_.data(), box, base_);
  }
  TileView<T> tile(const Box& box) const&& = delete;
  /// The whole array as one box.
  [[nodiscard]] Box whole() const noexcept {
    Box b;
    b.ndim = ndim();
    for (int a = 0; a < b.ndim; ++a) b.hi[static_cast<std::size_t>(a)] = shape_[static_cast<std::size_t>(a)];
    return b;
  }
  /// A 2-D array as one Eigen matrix (rows x cols); a 1-D array as one row. Not for windows.
  [[nodiscard]] Plane matrix() const& noexcept {
    TILEPOOL_CHECK(ndim() >= 1 && ndim() <= 2 && !window_);
    const std::int64_t rows = ndim() == 2 ? shape_[0] : 1;
    const std::int64_t cols = shape_.back();
    return Plane(data_, rows, cols, Eigen::OuterStride<>(cols));
  }
  Plane matrix() const&& = delete;

 private:
  // Throws outside_window unless `box` (an empty one always fits) is inside the window.
  void check_inside_window(const Box& box) const {
    bool inside = box.ndim == window_->ndim;
    for (int a = 0; inside && a < box.ndim; ++a) {
      const auto i = static_cast<std::size_t>(a);
      inside = box.lo[i] >= box.hi[i] || (window_->lo[i] <= box.lo[i] && box.hi[i] <= window_->hi[i]);
    }
    if (!inside) throw outside_window(box, *window_, window_input_);
  }

  std::shared_ptr<const void> owner_;
  T* data_ = nullptr;
  Shape shape_;
  std::vector<std::int64_t> strides_;
  std::optional<Box> window_;
  std::int64_t base_ = 0;  // the strided index of data_[0]: nonzero for windows only
  int window_input_ = kOutputWindow;
};

}  // namespace tilepool
