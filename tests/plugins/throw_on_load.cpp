// A plugin whose static initializer throws (`throw "text"`, not a std::exception) when dlopen
// runs it; with TPTEST_THROW_IN_ENTRY, its entry point throws instead. Both must be refused with
// one line, never end the process that loads them. With TPTEST_HANG_ON_LOAD, the static
// initializer never returns: Ctrl-C must still stop the process that loads it. With
// TPTEST_STOP_ON_LOAD, it stops its own process (raise(SIGSTOP)): refused, never waited for.
#include <signal.h>
#include <unistd.h>

#include "tilepool/workers/kernel_api.hpp"
#include "tilepool/workers/plugin.hpp"

namespace {

struct ThrowsWhenLoaded {
  ThrowsWhenLoaded() {
#if defined(TPTEST_HANG_ON_LOAD)
    for (;;) ::pause();
#elif defined(TPTEST_STOP_ON_LOAD)
    ::raise(SIGSTOP);
#elif !defined(TPTEST_THROW_IN_ENTRY)
    throw "static initializer of the test plugin failed";
#endif
  }
};
const ThrowsWhenLoaded kThrowsWhenLoaded;

}  // namespace

extern "C" __attribute__((visibility("default"))) const tilepool_plugin* tilepool_plugin_entry() {
#ifdef TPTEST_THROW_IN_ENTRY
  throw 42;
#else
  return nullptr;
#endif
}
