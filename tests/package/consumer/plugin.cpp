// A stand-in kernel plugin built with tilepool_add_kernel_plugin. The plugin entry point is
// not designed yet; these two functions let the consumer check what a plugin relies on:
// that it reaches the host's kernel registry (one libtilepool_kernels.so, not a copy) and that
// tilepool::Error thrown inside it is caught as tilepool::Error by the host.
#include "tilepool/workers/kernel.hpp"

namespace {
// Hidden by the helper's visibility preset: install_test.sh checks it is not exported.
const tilepool::KernelDef& lookup(const char* name) { return tilepool::find_kernel(name); }
}  // namespace

extern "C" __attribute__((visibility("default"))) const void* consumer_plugin_find_kernel(const char* name) {
  return &lookup(name);
}
