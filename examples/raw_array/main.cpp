// multiprocessing.RawArray + np.frombuffer, in C++: workers write disjoint tiles, no lock.
//
// A RawArray is shared memory with no lock; np.frombuffer views it as a numpy array without a
// copy. Here the shared memory is an ArraySegment (a float64 array in a segment, zero-filled)
// and the views are Eigen maps of its tiles. The 256x256 array is cut into 16 tiles of 64x64
// (a TileGrid); forked worker w fills tiles w, w+4, w+8, ... Each element is written by
// exactly one process, so no lock is needed: disjoint writes cannot race.
//
// Python twin: raw_array.py. Run: build/release/bin/example-raw_array
#include <array>
#include <cstdio>
#include <exception>

#include <Eigen/Core>

#include "common/example_support.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/shared/tiling.hpp"

namespace {

using Matrix = tilepool::PlaneTypes<double>::Matrix;  // row-major, like numpy

constexpr std::int64_t kRows = 256;
constexpr std::int64_t kCols = 256;
constexpr std::int64_t kTile = 64;
constexpr int kProcesses = 4;

// The value every element gets: row * 1000 + column, for the rows and columns from (row0, col0).
Matrix values_from(std::int64_t row0, std::int64_t col0, std::int64_t rows, std::int64_t cols) {
  return Matrix::NullaryExpr(rows, cols, [=](Eigen::Index r, Eigen::Index c) {
    return static_cast<double>(row0 + r) * 1000.0 + static_cast<double>(col0 + c);
  });
}

}  // namespace

int main() {
  try {
    // RawArray('d', ROWS * COLS), here with its shape and dtype: zero-filled, no lock.
    const tilepool::ArraySegment array = tilepool::ArraySegment::create(
        tilepool::examples::segment_name("raw_array"), tilepool::DType::float64, {kRows, kCols});
    const tilepool::TileGrid grid = tilepool::TileGrid::make(array.shape(), std::array{kTile, kTile});

    tilepool::examples::run_forked(kProcesses, [&](int worker) {
      // np.frombuffer(raw): a typed view of the shared bytes, no copy. It keeps the mapping alive.
      const tilepool::ArrayView<double> a = array.view<double>();
      for (std::int64_t t = worker; t < grid.tile_count(); t += kProcesses) {
        const tilepool::Box box = grid.box(t);
        // The tile as an Eigen matrix over the shared memory: assigning to it writes the segment.
        a.tile(box).plane(0) = values_from(box.lo[0], box.lo[1], box.extent(0), box.extent(1));
      }
    });

    const tilepool::ArrayView<double> a = array.view<double>();
    const bool right = a.matrix() == values_from(0, 0, kRows, kCols);
    std::printf("the parent sees every tile the workers wrote: %s\n", right ? "True" : "False");
    std::printf("result: %s float64 in %lld tiles of %lldx%lld by %d processes, no lock: sum=%.0f every element right=%s\n",
                tilepool::format_shape(array.shape()).c_str(), static_cast<long long>(grid.tile_count()),
                static_cast<long long>(kTile), static_cast<long long>(kTile), kProcesses, a.matrix().sum(),
                right ? "yes" : "no");
    return right ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "example-raw_array: error: %s\n", e.what());
    return 1;
  }
}
