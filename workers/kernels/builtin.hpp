#pragma once
// Private to workers/: the built-in kernels' declarations, one per file in this folder.

#include "tilepool/workers/kernel.hpp"

namespace tilepool::kernels {

extern const KernelDef kAdd;        // elementwise.cpp
extern const KernelDef kNegate;     // elementwise.cpp
extern const KernelDef kSquare;     // elementwise.cpp
extern const KernelDef kAddScalar;  // elementwise.cpp
extern const KernelDef kBlur3x3;    // blur3x3.cpp
extern const KernelDef kMatmul;     // matmul.cpp
extern const KernelDef kSum;        // sum.cpp

}  // namespace tilepool::kernels
