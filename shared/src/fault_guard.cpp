#include "tilepool/shared/fault_guard.hpp"

#include <fmt/format.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <ucontext.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <optional>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"

namespace tilepool {
namespace {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free && std::atomic<std::uintptr_t>::is_always_lock_free &&
                  std::atomic<bool>::is_always_lock_free,
              "the signal handler reads the registry with lock-free atomics only");

// One registered range. The signal handler reads `begin`, `end` and `read_only` without a
// lock, as a seqlock: `sequence` is odd while a registering thread rewrites them, and changes
// whenever the slot is reused, so a reader sees one registration's values or none. `what` and
// `fd` are read and written only under g_mutex, never by the handler.
struct Slot {
  std::atomic<std::uint64_t> sequence{0};
  std::atomic<std::uintptr_t> begin{0};  // 0: free
  std::atomic<std::uintptr_t> end{0};
  std::atomic<bool> read_only{false};
  std::string what;
  int fd = -1;
};

// Slots come in chunks that are linked once and never freed, so the handler can walk them
// while another thread adds one: the registry has no fixed capacity.
constexpr std::size_t kSlotsPerChunk = 64;
struct Chunk {
  Slot slots[kSlotsPerChunk];
  std::atomic<Chunk*> next{nullptr};
};

std::atomic<Chunk*> g_chunks{nullptr};
std::mutex g_mutex;  // serializes registering and unregistering, and reading `what`/`fd`

// Rewrites a slot's range (under g_mutex): readers see the old values, the new ones, or an
// odd sequence, never a mix.
void write_range(Slot& s, std::uintptr_t begin, std::uintptr_t end, bool read_only) noexcept {
  // Sequentially consistent throughout (no fences: ThreadSanitizer does not model them);
  // registering is rare, so the cost does not matter.
  const std::uint64_t seq = s.sequence.load();
  s.sequence.store(seq + 1);
  s.begin.store(begin);
  s.end.store(end);
  s.read_only.store(read_only);
  s.sequence.store(seq + 2);
}

Slot& free_slot() {
  Chunk* last = nullptr;
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c != nullptr; c = c->next.load(std::memory_order_acquire)) {
    for (Slot& s : c->slots) {
      if (s.begin.load(std::memory_order_relaxed) == 0) return s;
    }
    last = c;
  }
  auto* fresh = new Chunk;  // never freed: the handler may be walking the list
  (last == nullptr ? g_chunks : last->next).store(fresh, std::memory_order_release);
  return fresh->slots[0];
}

// What the handler found: the registration the address belongs to, as it was at that moment.
struct Hit {
  Slot* slot = nullptr;
  std::uint64_t sequence = 0;
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool read_only = false;
};

// Async-signal-safe: atomic loads only.
bool find_range(std::uintptr_t address, Hit& hit) noexcept {
  for (Chunk* c = g_chunks.load(std::memory_order_acquire); c != nullptr; c = c->next.load(std::memory_order_acquire)) {
    for (Slot& s : c->slots) {
      const std::uint64_t seq = s.sequence.load();
      if ((seq & 1) != 0) continue;
      const std::uintptr_t begin = s.begin.load();
      const std::uintptr_t end = s.end.load();
      const bool read_only = s.read_only.load();
      if (s.sequence.load() != seq) continue;
      if (begin != 0 && address >= begin && address < end) {
        hit = Hit{&s, seq, begin, end, read_only};
        return true;
      }
    }
  }
  return false;
}

// What the faulting instruction did, where the processor tells (x86-64's page-fault error code).
enum class Access { unknown, read, write };

struct Fault {
  int signal = 0;
  std::uintptr_t address = 0;
  Hit hit;
  Access access = Access::unknown;
};

Access access_of(const void* context) noexcept {
#if defined(__x86_64__) && defined(REG_ERR)
  // Bit 1 of the page-fault error code: the access was a write.
  const auto* uc = static_cast<const ucontext_t*>(context);
  return (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0 ? Access::write : Access::read;
#else
  (void)context;
  return Access::unknown;
#endif
}

// One active guard_faults() call, on the stack of the thread that made it.
struct GuardFrame {
  sigjmp_buf jump;
  GuardFrame* enclosing = nullptr;
  Fault fault;
};

// initial-exec: the handler must not make the TLS allocator run (it is not async-signal-safe).
[[gnu::tls_model("initial-exec")]] thread_local GuardFrame* tl_guard = nullptr;

struct sigaction g_previous_bus {};
struct sigaction g_previous_segv {};

// Hands a fault that is not ours to whoever handled the signal before us, or to the default
// action: reinstated, it applies when the faulting instruction runs again on return (a signal
// sent with kill() is raised again instead), so the process dies of the signal as it would have.
void chain(int sig, siginfo_t* info, void* context) noexcept {
  const struct sigaction& previous = sig == SIGBUS ? g_previous_bus : g_previous_segv;
  if ((previous.sa_flags & SA_SIGINFO) != 0) {
    if (previous.sa_sigaction != nullptr) previous.sa_sigaction(sig, info, context);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  const bool sent = info->si_code <= 0;
  if (previous.sa_handler == SIG_IGN && sent) return;
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(sig, &default_action, nullptr);
  if (sent) ::raise(sig);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  GuardFrame* guard = tl_guard;
  const bool shrank = sig == SIGBUS && info->si_code == BUS_ADRERR;
  const bool denied = sig == SIGSEGV && info->si_code == SEGV_ACCERR;
  if (guard != nullptr && (shrank || denied)) {
    const auto address = reinterpret_cast<std::uintptr_t>(info->si_addr);
    Hit hit;
    if (find_range(address, hit) && (shrank || hit.read_only)) {
      guard->fault = Fault{sig, address, hit, access_of(context)};
      tl_guard = guard->enclosing;
      // SA_NODEFER left the signal unblocked, so no mask needs restoring on the way out.
      siglongjmp(guard->jump, 1);
    }
  }
  chain(sig, info, context);
  errno = saved_errno;
}

bool install_handler() noexcept {
  struct sigaction action {};
  action.sa_sigaction = on_fault;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  // Read the previous handler before replacing it, so a fault in between finds it in place.
  ::sigaction(SIGBUS, nullptr, &g_previous_bus);
  ::sigaction(SIGBUS, &action, nullptr);
  ::sigaction(SIGSEGV, nullptr, &g_previous_segv);
  ::sigaction(SIGSEGV, &action, nullptr);
  return true;
}

// A SIGBUS on a mapping whose file still covers it: the kernel could not provide the page. A
// filesystem with (almost) no free space says why: a hole needed a block (or a tmpfs page) and
// there was none. Otherwise it was an I/O error (or a quota).
bool filesystem_full(int fd) noexcept {
  struct statvfs st {};
  if (::fstatvfs(fd, &st) != 0) return false;
  constexpr std::uint64_t kAlmostNothing = std::uint64_t{1} << 20;
  return static_cast<std::uint64_t>(st.f_bavail) * static_cast<std::uint64_t>(st.f_frsize) < kAlmostNothing;
}

Error fault_error(const Fault& fault) {
  std::string what = "a shared mapping";
  std::optional<long long> now;
  bool full = false;
  {
    const std::lock_guard lock(g_mutex);
    // The slot may have been unregistered (and reused) since: then only the range is known.
    if (fault.hit.slot->sequence.load(std::memory_order_relaxed) == fault.hit.sequence) {
      what = fault.hit.slot->what;
      struct stat st {};
      if (fault.hit.slot->fd >= 0 && ::fstat(fault.hit.slot->fd, &st) == 0) {
        now = st.st_size;
        full = filesystem_full(fault.hit.slot->fd);
      }
    }
  }
  const std::uintptr_t needs = fault.hit.end - fault.hit.begin;
  const std::uintptr_t offset = fault.address - fault.hit.begin;
  if (fault.signal == SIGSEGV) {
    return Error(Errc::job_failed, fmt::format("{} is read-only: a write to byte {} of it faulted", what, offset));
  }
  if (now && static_cast<std::uint64_t>(*now) >= needs) {
    // Mappings start at offset 0 of their file: the file still holds every byte mapped.
    const char* doing = fault.hit.read_only || fault.access == Access::read ? "reading"
                        : fault.access == Access::write                     ? "writing"
                                                                            : "writing or reading";
    if (full) {
      return Error(Errc::no_space, fmt::format("{}: no space left on device while {} its pages (the filesystem is full)",
                                               what, doing));
    }
    return Error(Errc::system, fmt::format("{}: the system could not provide its pages while {} them at byte {} (an I/O "
                                           "error, or a quota that is exhausted)",
                                           what, doing, offset));
  }
  if (now) {
    return Error(Errc::job_failed,
                 fmt::format("{} shrank under the job: it is now {} bytes, the job needs {}", what, *now, needs));
  }
  return Error(Errc::job_failed,
               fmt::format("{} shrank under the job: byte {} of the {} the job needs is gone", what, offset, needs));
}

}  // namespace

FaultRegistration::FaultRegistration(std::span<const std::byte> range, std::string what, int fd, bool read_only) {
  if (range.empty()) return;
  std::string escaped = escape_for_message(what);
  const std::lock_guard lock(g_mutex);
  Slot& s = free_slot();
  s.what = std::move(escaped);
  s.fd = fd;
  const auto begin = reinterpret_cast<std::uintptr_t>(range.data());
  write_range(s, begin, begin + range.size(), read_only);
  slot_ = &s;
}

FaultRegistration::FaultRegistration(FaultRegistration&& other) noexcept : slot_(std::exchange(other.slot_, nullptr)) {}

FaultRegistration& FaultRegistration::operator=(FaultRegistration&& other) noexcept {
  if (this != &other) {
    reset();
    slot_ = std::exchange(other.slot_, nullptr);
  }
  return *this;
}

FaultRegistration::~FaultRegistration() { reset(); }

void FaultRegistration::reset() noexcept {
  if (slot_ == nullptr) return;
  auto& s = *static_cast<Slot*>(slot_);
  const std::lock_guard lock(g_mutex);
  write_range(s, 0, 0, false);
  s.what.clear();
  s.fd = -1;
  slot_ = nullptr;
}

namespace detail {

void run_guarded(void (*body)(void*), void* context) {
  static const bool installed = install_handler();
  (void)installed;
  GuardFrame frame;
  frame.enclosing = tl_guard;
  // Puts the enclosing guard back however this call ends: return, exception or fault.
  struct Restore {
    GuardFrame* enclosing;
    ~Restore() { tl_guard = enclosing; }
  } restore{frame.enclosing};
  if (sigsetjmp(frame.jump, 0) == 0) {
    tl_guard = &frame;
    body(context);
    return;
  }
  // Back from the handler: it filled frame.fault before jumping.
  std::atomic_signal_fence(std::memory_order_acquire);
  throw fault_error(frame.fault);
}

}  // namespace detail
}  // namespace tilepool
