#pragma once
/// @file
/// The bounds a job has whatever its size: how many inputs a kernel takes and how many workers
/// a pool may have. (An array's dimensions: kMaxDims, shape.hpp.)

#include <cstddef>

namespace tilepool {

/// The most inputs a kernel takes (a job's arrays besides its output).
inline constexpr std::size_t kMaxInputs = 4;
/// The most workers a pool may have: a sanity bound on a flag, not a layout limit (a control
/// block holds as many worker slots as it was made for).
inline constexpr int kMaxWorkers = 4096;

}  // namespace tilepool
