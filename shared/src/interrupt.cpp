#include "tilepool/shared/interrupt.hpp"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <fmt/format.h>

#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {
std::atomic<int> g_interrupt_signal{0};
extern "C" void on_interrupt(int sig) { g_interrupt_signal.store(sig); }
thread_local const std::atomic<bool>* t_cancel = nullptr;
}  // namespace

CancelScope::CancelScope(const std::atomic<bool>* cancel) noexcept : previous_(t_cancel) {
  if (cancel != nullptr) t_cancel = cancel;
}

CancelScope::~CancelScope() { t_cancel = previous_; }

int stop_signal() noexcept {
  if (const int sig = interrupt_signal(); sig != 0) return sig;
  return t_cancel != nullptr && t_cancel->load(std::memory_order_relaxed) ? SIGINT : 0;
}

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int interrupt_signal() noexcept { return g_interrupt_signal.load(); }

void throw_if_interrupted() {
  const int sig = interrupt_signal();
  if (sig == 0 && t_cancel != nullptr && t_cancel->load(std::memory_order_relaxed)) {
    throw Error(Errc::interrupted, "cancelled; workers stopped, job segments removed");
  }
  if (sig == 0) return;
  const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : ::strsignal(sig);
  throw Error(Errc::interrupted, fmt::format("interrupted by {}; workers stopped, job segments removed", name));
}

}  // namespace tilepool
