#include "tilepool/shared/interrupt.hpp"

#include <signal.h>

#include <atomic>
#include <cstring>
#include <utility>
#include <fmt/format.h>

#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {
std::atomic<int> g_interrupt_signal{0};
std::atomic<StuckStopHandler> g_stuck_stop_handler{nullptr};
extern "C" void on_interrupt(int sig) {
  int none = 0;
  g_interrupt_signal.compare_exchange_strong(none, sig);  // the first one is the answer
}
thread_local const std::atomic<bool>* t_cancel = nullptr;
thread_local const std::function<bool()>* t_poll = nullptr;

// The calling thread's scope asks to stop: its flag is set, or its poll says so.
bool cancelled() noexcept {
  if (t_cancel != nullptr && t_cancel->load(std::memory_order_relaxed)) return true;
  try {
    return t_poll != nullptr && (*t_poll)();
  } catch (...) {  // a poll that fails cannot say "stop"
    return false;
  }
}
}  // namespace

CancelScope::CancelScope(const std::atomic<bool>* cancel, std::function<bool()> poll) noexcept
    : previous_(t_cancel), poll_(std::move(poll)), previous_poll_(t_poll) {
  if (cancel != nullptr) t_cancel = cancel;
  if (poll_) t_poll = &poll_;
}

CancelScope::~CancelScope() {
  t_cancel = previous_;
  t_poll = previous_poll_;
}

int stop_signal() noexcept {
  if (const int sig = interrupt_signal(); sig != 0) return sig;
  return cancelled() ? SIGINT : 0;
}

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int interrupt_signal() noexcept { return g_interrupt_signal.load(); }

void set_stuck_stop_handler(StuckStopHandler handler) noexcept { g_stuck_stop_handler.store(handler); }

void end_if_stop_is_stuck(std::chrono::steady_clock::duration waited) noexcept {
  const int sig = interrupt_signal();
  if (sig == 0 || waited < kStuckStopGrace) return;
  if (const StuckStopHandler handler = g_stuck_stop_handler.load(); handler != nullptr) handler(sig);
}

void throw_if_interrupted() {
  const int sig = interrupt_signal();
  if (sig == 0 && cancelled()) {
    throw Error(Errc::interrupted, "cancelled; workers stopped, job segments removed");
  }
  if (sig == 0) return;
  const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : ::strsignal(sig);
  throw Error(Errc::interrupted, fmt::format("interrupted by {}; workers stopped, job segments removed", name));
}

}  // namespace tilepool
