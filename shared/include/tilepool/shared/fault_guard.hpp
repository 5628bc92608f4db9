#pragma once
/// @file
/// Turning memory faults on shared mappings into errors: a segment that another process
/// truncates under a reader raises SIGBUS on the next touch, as does a page the kernel cannot
/// allocate (a hole of a sparse file on a full filesystem), and a write through a read-only
/// mapping raises SIGSEGV. Inside guard_faults() on this thread, such a fault on a registered
/// mapping becomes a thrown Error naming the segment; anywhere else the signal does
/// what it did before (the previous handler runs, or the default action kills the process).
///
/// How: every Segment mapping registers its address range in a process-wide, lock-free
/// registry (FaultRegistration); the first guard_faults() installs one SIGBUS/SIGSEGV handler
/// (SA_SIGINFO | SA_ONSTACK | SA_NODEFER) that, when the faulting thread is inside a guard and
/// the address lies in a registered range, jumps back (siglongjmp) to that guard, which throws.
///
/// Limits, which callers must respect:
/// - A fault abandons the guarded call mid-way: destructors of objects created inside the call
///   do not run, and locks it holds stay held. Guard only code that owns nothing across the
///   fault: a kernel's tile call over Eigen maps, a memcpy of tile bytes.
/// - Only faults raised by this thread's own instructions inside the guard are caught; a
///   system call handed a truncated mapping fails with EFAULT instead and must be checked.
/// - Another library that installs a SIGBUS/SIGSEGV handler after ours and does not chain to
///   the previous one disables the guard.
/// - No per-call system call: a guard costs a sigsetjmp without the signal mask.
/// - No alternate signal stack is needed (the handler uses a few hundred bytes of the
///   faulting thread's stack); SA_ONSTACK uses one where a thread has it (AddressSanitizer
///   sets one up), and jumping from it back to the guard is supported by glibc and ASan.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

namespace tilepool {

/// Registers a mapped range so that faults in it are caught by guard_faults() and reported as
/// `what` ("segment 'x'"). `fd`, if not -1, is a descriptor of the mapped object, mapped from
/// its offset 0, that stays open while registered: it is fstat'ed to tell how large the object
/// is now (a SIGBUS on a file that shrank), and its filesystem's free space is read when the
/// file still covers the range (a SIGBUS because a page could not be allocated). Move-only;
/// unregisters on destruction (do that before unmapping). Registering and unregistering take a
/// mutex; the signal handler reads the registry without locks. Thread-safe.
class FaultRegistration {
 public:
  FaultRegistration() = default;
  FaultRegistration(std::span<const std::byte> range, std::string what, int fd, bool read_only);
  FaultRegistration(FaultRegistration&& other) noexcept;
  FaultRegistration& operator=(FaultRegistration&& other) noexcept;
  FaultRegistration(const FaultRegistration&) = delete;
  FaultRegistration& operator=(const FaultRegistration&) = delete;
  ~FaultRegistration();

  /// False for a default-constructed or moved-from registration.
  [[nodiscard]] explicit operator bool() const noexcept { return slot_ != nullptr; }

 private:
  void reset() noexcept;
  void* slot_ = nullptr;
};

namespace detail {
/// Runs body(context); if it faults on a registered mapping (see guard_faults), throws
/// Error(job_failed) describing the fault. Exceptions from body propagate unchanged.
void run_guarded(void (*body)(void*), void* context);
}  // namespace detail

/// Calls f() and returns its result; a SIGBUS or a SIGSEGV from a write to a read-only mapping,
/// raised by this thread inside the call at an address of a registered mapping, is thrown as
/// an Error. A SIGBUS on an object that shrank under its mapping is Error(job_failed), e.g.
/// "segment 'x' shrank under the job: it is now 0 bytes, the job needs 4096"; on an object
/// that still covers its mapping, the kernel could not provide a page: Error(no_space) "file
/// x: no space left on device while writing its pages (the filesystem is full)" when its
/// filesystem is full (a hole of a sparse file, a mapped output on a full disk or tmpfs), else
/// Error(system) (an I/O error). A SIGSEGV is Error(job_failed). Any other fault, and every fault outside a
/// guard or on another thread, is left to the previous handler (by default it kills). Guards
/// nest. Read the limits at the top of this file. Thread-safe: each thread has its own guard.
template <class F>
decltype(auto) guard_faults(F&& f) {
  using Callable = std::remove_reference_t<F>;
  using Result = std::invoke_result_t<Callable&>;
  static_assert(!std::is_reference_v<Result>, "guard_faults returns by value");
  if constexpr (std::is_void_v<Result>) {
    Callable* target = std::addressof(f);
    detail::run_guarded([](void* c) { (**static_cast<Callable**>(c))(); }, &target);
  } else {
    struct Call {
      Callable* f;
      std::optional<Result> result;
    } call{std::addressof(f), std::nullopt};
    detail::run_guarded([](void* c) { auto* k = static_cast<Call*>(c); k->result.emplace((*k->f)()); }, &call);
    return Result(std::move(*call.result));
  }
}

}  // namespace tilepool
