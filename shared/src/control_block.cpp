#include "tilepool/shared/control_block.hpp"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/futex.hpp"

namespace tilepool {
namespace {

constexpr std::size_t align_up(std::size_t n, std::size_t a) noexcept { return (n + a - 1) / a * a; }

constexpr std::size_t header_bytes() noexcept { return align_up(sizeof(ControlBlock), 64); }
constexpr std::size_t slots_bytes(int workers) noexcept { return static_cast<std::size_t>(workers) * sizeof(WorkerSlot); }
constexpr std::size_t states_bytes(std::int64_t capacity) noexcept {
  return align_up(static_cast<std::size_t>(capacity) * sizeof(std::atomic<std::uint32_t>), 64);
}

}  // namespace

std::int64_t monotonic_ns() noexcept {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void JobDescriptor::set_text(char* dest, std::size_t capacity, std::string_view text, std::string_view field) {
  if (text.size() >= capacity || text.find('\0') != std::string_view::npos) {
    throw Error(Errc::usage, fmt::format("{} is too long ({} bytes; at most {})", field, text.size(), capacity - 1));
  }
  std::memcpy(dest, text.data(), text.size());
  dest[text.size()] = '\0';
}

ArrayDescription ArrayDescription::of(DType dtype, const Shape& shape) {
  if (shape.size() > static_cast<std::size_t>(kMaxDims)) {
    throw Error(Errc::usage, fmt::format("an array of {} axes; at most {}", shape.size(), kMaxDims));
  }
  ArrayDescription d;
  d.dtype_code = static_cast<std::int32_t>(dtype);
  d.ndim = static_cast<std::int32_t>(shape.size());
  std::copy(shape.begin(), shape.end(), d.extents);
  return d;
}

DType ArrayDescription::dtype() const {
  if (dtype_code < 0 || dtype_code >= kDTypeCount) {
    throw Error(Errc::bad_input, fmt::format("job descriptor: dtype code {} is no dtype", dtype_code));
  }
  return static_cast<DType>(dtype_code);
}

Shape ArrayDescription::shape() const {
  if (ndim < 0 || ndim > kMaxDims) throw Error(Errc::bad_input, fmt::format("job descriptor: an array of {} axes", ndim));
  Shape s(extents, extents + ndim);
  if (!element_count(s)) throw Error(Errc::bad_input, fmt::format("job descriptor: bad shape {}", format_shape(s)));
  return s;
}

std::size_t ControlBlock::bytes_for(std::int64_t tile_capacity, int worker_capacity) noexcept {
  return header_bytes() + slots_bytes(worker_capacity) + states_bytes(tile_capacity) +
         static_cast<std::size_t>(tile_capacity) * sizeof(TilePartial);
}

ControlBlock* ControlBlock::create_in(void* memory, std::size_t bytes, std::int64_t tile_capacity, int worker_capacity) {
  TILEPOOL_CHECK(tile_capacity >= 0 && worker_capacity > 0 && bytes >= bytes_for(tile_capacity, worker_capacity));
  TILEPOOL_CHECK(reinterpret_cast<std::uintptr_t>(memory) % 64 == 0);
  auto* cb = new (memory) ControlBlock();
  std::memcpy(cb->magic_, kMagic, sizeof kMagic);
  cb->version_ = kVersion;
  cb->tile_capacity_ = tile_capacity;
  cb->worker_capacity_ = worker_capacity;
  cb->total_bytes_ = bytes;
  WorkerSlot* slots = cb->worker_slots();
  for (int i = 0; i < worker_capacity; ++i) new (&slots[i]) WorkerSlot();
  for (std::int64_t i = 0; i < tile_capacity; ++i) new (&cb->tile_state(i)) std::atomic<std::uint32_t>(kTileFree);
  return cb;
}

ControlBlock* ControlBlock::open_in(void* memory, std::size_t bytes, std::string_view what) {
  auto* cb = static_cast<ControlBlock*>(memory);
  if (bytes < header_bytes() || std::memcmp(cb->magic_, kMagic, sizeof kMagic) != 0) {
    throw Error(Errc::bad_input, fmt::format("{}: not a tilepool control block", what));
  }
  if (cb->version_ != kVersion) {
    throw Error(Errc::bad_input, fmt::format("{}: control block version {}, expected {} (runner and worker from different builds?)",
                                             what, cb->version_, kVersion));
  }
  if (cb->tile_capacity_ < 0 || cb->worker_capacity_ <= 0 || bytes < bytes_for(cb->tile_capacity_, cb->worker_capacity_) ||
      cb->total_bytes_ != bytes) {
    throw Error(Errc::bad_input, fmt::format("{}: control block size {} does not match its header", what, bytes));
  }
  return cb;
}

WorkerSlot* ControlBlock::worker_slots() noexcept {
  return reinterpret_cast<WorkerSlot*>(reinterpret_cast<std::byte*>(this) + header_bytes());
}

std::atomic<std::uint32_t>& ControlBlock::tile_state(std::int64_t tile) noexcept {
  auto* states = reinterpret_cast<std::atomic<std::uint32_t>*>(reinterpret_cast<std::byte*>(this) + header_bytes() +
                                                               slots_bytes(worker_capacity_));
  return states[tile];
}

TilePartial& ControlBlock::partial(std::int64_t tile) noexcept {
  auto* partials = reinterpret_cast<TilePartial*>(reinterpret_cast<std::byte*>(this) + header_bytes() +
                                                  slots_bytes(worker_capacity_) + states_bytes(tile_capacity_));
  return partials[tile];
}

bool ControlBlock::wait_until_idle(std::chrono::milliseconds timeout) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  idle_waiters_.fetch_add(1, std::memory_order_seq_cst);  // the last worker to leave wakes us
  bool idle = true;
  while (active_.load(std::memory_order_seq_cst) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      idle = false;
      break;
    }
    futex_wait(active_, active_.load(std::memory_order_relaxed), std::chrono::microseconds(200));
  }
  idle_waiters_.fetch_sub(1, std::memory_order_seq_cst);
  return idle;
}

void ControlBlock::post_job(const JobDescriptor& desc, const std::function<void()>& while_quiet) {
  const std::int64_t n = desc.tile_count;
  TILEPOOL_CHECK(n >= 0 && n <= tile_capacity_);
  // Dekker-style handshake with enter_job(): once posting_ is set and active_ reads 0, no
  // worker is reading the descriptor and none can enter until the epoch moves.
  posting_.store(1, std::memory_order_seq_cst);
  while (active_.load(std::memory_order_seq_cst) != 0) {
    futex_wait(active_, active_.load(std::memory_order_relaxed), std::chrono::microseconds(200));
  }
  job_ = desc;
  if (while_quiet) {
    try {
      while_quiet();
    } catch (...) {
      // Nothing was posted: a job id of 0 is no job, and workers may enter again.
      job_ = JobDescriptor{};
      posting_.store(0, std::memory_order_seq_cst);
      throw;
    }
  }
  for (std::int64_t i = 0; i < n; ++i) tile_state(i).store(kTileFree, std::memory_order_relaxed);
  cursor_.store(0, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  requeued_.store(0, std::memory_order_relaxed);
  requeued_total_.store(0, std::memory_order_relaxed);
  first_claim_ns_.store(0, std::memory_order_relaxed);
  last_done_ns_.store(0, std::memory_order_relaxed);
  error_state_.store(0, std::memory_order_relaxed);
  error_code_ = 0;
  error_errno_ = 0;
  error_[0] = '\0';
  WorkerSlot* slots = worker_slots();
  for (int i = 0; i < worker_capacity_; ++i) {
    slots[i].current_tile.store(-1, std::memory_order_relaxed);
    slots[i].chunk_next.store(0, std::memory_order_relaxed);
    slots[i].chunk_end.store(0, std::memory_order_relaxed);
    slots[i].unreported_done.store(0, std::memory_order_relaxed);
  }
  posting_.store(0, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  // Only as many workers as can get a tile: a woken worker claims until the cursor runs dry, so
  // waking more than there are tiles only makes the rest (thousands, in a big pool) enter the
  // job, find nothing and fight for cores. The others see the new epoch when they next wake.
  (void)futex_wake(epoch_, std::min<std::int64_t>(n, worker_capacity_));
}

bool ControlBlock::job_complete() const noexcept {
  return done_.load(std::memory_order_acquire) >= job_.tile_count;
}

std::string ControlBlock::error_message() const {
  if (error_state_.load(std::memory_order_acquire) != 2) return {};
  return std::string(error_, strnlen(error_, kMessageCapacity));
}

void ControlBlock::wait_for_progress(std::chrono::nanoseconds timeout) const noexcept {
  const std::uint32_t seen = finished_.load(std::memory_order_acquire);
  if (job_complete() || job_failed()) return;
  futex_wait(finished_, seen, timeout);
}

std::int64_t ControlBlock::requeue_tiles_of(int slot) noexcept {
  std::int64_t count = 0;     // started: run again
  std::int64_t returned = 0;  // reserved, never started
  const std::uint32_t claimed = tile_claimed_by(slot);
  const std::uint32_t reserved = tile_reserved_by(slot);
  for (std::int64_t i = 0; i < job_.tile_count; ++i) {
    std::uint32_t expected = tile_state(i).load(std::memory_order_relaxed);
    if (expected != claimed && expected != reserved) continue;
    if (tile_state(i).compare_exchange_strong(expected, kTileFree, std::memory_order_acq_rel)) {
      ++(expected == claimed ? count : returned);
    }
  }
  WorkerSlot& w = worker(slot);
  w.current_tile.store(-1, std::memory_order_release);
  w.chunk_next.store(0, std::memory_order_relaxed);
  w.chunk_end.store(0, std::memory_order_relaxed);
  report_done(slot);  // what it finished before it died
  leave_job(slot);    // a worker that died inside the job never left it itself
  if (count + returned > 0) {
    requeued_.fetch_add(count + returned, std::memory_order_acq_rel);
    requeued_total_.fetch_add(count, std::memory_order_acq_rel);
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    (void)futex_wake(epoch_, std::min<std::int64_t>(count + returned, worker_capacity_));
  }
  return count;
}

void ControlBlock::request_stop() noexcept {
  stop_.store(1, std::memory_order_seq_cst);
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(epoch_);
}

void ControlBlock::wait_for_epoch_change(std::uint32_t seen, std::chrono::nanoseconds timeout) const noexcept {
  futex_wait(epoch_, seen, timeout);
}

bool ControlBlock::enter_job(int slot) noexcept {
  worker(slot).inside.store(1, std::memory_order_seq_cst);
  active_.fetch_add(1, std::memory_order_seq_cst);
  if (posting_.load(std::memory_order_seq_cst) != 0) {
    leave_job(slot);
    return false;
  }
  return true;
}

void ControlBlock::leave_job(int slot) noexcept {
  if (worker(slot).inside.exchange(0, std::memory_order_seq_cst) == 0) return;  // let out already (it died)
  if (active_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
      (posting_.load(std::memory_order_seq_cst) != 0 || idle_waiters_.load(std::memory_order_seq_cst) != 0)) {
    futex_wake_all(active_);
  }
}

std::int64_t ControlBlock::claim_next_tile(int slot) noexcept {
  const std::int64_t n = job_.tile_count;
  WorkerSlot& w = worker_slots()[slot];
  const std::uint32_t claimed = tile_claimed_by(slot);
  const std::uint32_t reserved = tile_reserved_by(slot);
  auto start = [&](std::int64_t t) {
    // The clock is read only when someone looks: the supervisor's tile timeout, and the job's
    // first claim (compute_s). Every other claim reads the shared word and writes nothing there.
    if (job_.stamp_claims != 0) w.claimed_at_ns.store(monotonic_ns(), std::memory_order_relaxed);
    w.current_tile.store(t, std::memory_order_release);
    if (first_claim_ns_.load(std::memory_order_relaxed) == 0) {
      std::int64_t zero = 0;
      first_claim_ns_.compare_exchange_strong(zero, monotonic_ns(), std::memory_order_acq_rel);
    }
    return t;
  };
  while (error_state_.load(std::memory_order_relaxed) == 0) {
    // The rest of this worker's chunk: tiles reserved for it (none other starts them).
    for (std::int64_t t = w.chunk_next.load(std::memory_order_relaxed); t < w.chunk_end.load(std::memory_order_relaxed);) {
      w.chunk_next.store(t + 1, std::memory_order_relaxed);
      std::uint32_t expected = reserved;
      if (tile_state(t).compare_exchange_strong(expected, claimed, std::memory_order_acq_rel)) return start(t);
      ++t;
    }
    report_done(slot);
    // A new chunk from the cursor: guided, so that the last tiles are spread over the workers.
    const std::int64_t left = n - cursor_.load(std::memory_order_relaxed);
    if (left <= 0) break;
    const std::int64_t size = job_.dispatch.chunk_size(left, worker_capacity_);
    const std::int64_t first = cursor_.fetch_add(size, std::memory_order_relaxed);
    if (first >= n) break;
    const std::int64_t end = std::min(first + size, n);
    for (std::int64_t t = first; t < end; ++t) {
      // A tile can already be taken by a worker that scans for requeued tiles: then skip it.
      std::uint32_t expected = kTileFree;
      tile_state(t).compare_exchange_strong(expected, reserved, std::memory_order_acq_rel);
    }
    w.chunk_end.store(end, std::memory_order_relaxed);
    w.chunk_next.store(first, std::memory_order_relaxed);
  }
  report_done(slot);
  // Tiles put back after a worker died: rare, so a scan is fine.
  while (requeued_.load(std::memory_order_acquire) > 0 && error_state_.load(std::memory_order_relaxed) == 0) {
    bool found = false;
    for (std::int64_t t = 0; t < n; ++t) {
      std::uint32_t expected = kTileFree;
      if (tile_state(t).load(std::memory_order_relaxed) == kTileFree &&
          tile_state(t).compare_exchange_strong(expected, claimed, std::memory_order_acq_rel)) {
        requeued_.fetch_sub(1, std::memory_order_acq_rel);
        return start(t);
      }
      found = found || tile_state(t).load(std::memory_order_relaxed) == kTileFree;
    }
    if (!found) break;
  }
  return -1;
}

void ControlBlock::complete_tile(int slot, std::int64_t tile) noexcept {
  tile_state(tile).store(kTileDone, std::memory_order_release);
  WorkerSlot& w = worker_slots()[slot];
  w.current_tile.store(-1, std::memory_order_relaxed);
  // Only this worker writes its slot: plain increments, no locked instruction.
  w.tiles_done.store(w.tiles_done.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  w.unreported_done.store(w.unreported_done.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // The last tile of a chunk (or one completed after the worker's claims ran out, as copy
  // mode's tiles in flight are): report now, so the job's count is never left waiting.
  if (w.chunk_next.load(std::memory_order_relaxed) >= w.chunk_end.load(std::memory_order_relaxed)) report_done(slot);
}

void ControlBlock::report_done(int slot) noexcept {
  WorkerSlot& w = worker_slots()[slot];
  const std::int64_t count = w.unreported_done.exchange(0, std::memory_order_acq_rel);
  if (count == 0) return;
  if (done_.fetch_add(count, std::memory_order_acq_rel) + count == job_.tile_count) {
    last_done_ns_.store(monotonic_ns(), std::memory_order_release);
    finished_.fetch_add(1, std::memory_order_acq_rel);
    futex_wake_all(finished_);
  }
}

void ControlBlock::report_error(std::string_view message, Errc code, int sys_errno) noexcept {
  std::uint32_t expected = 0;
  if (error_state_.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    error_code_ = static_cast<std::int32_t>(code);
    error_errno_ = sys_errno;
    // Cut at a character boundary, with "..." to show it was cut (as cut_message does).
    const bool cut = message.size() > kMessageCapacity - 1;
    const std::size_t n = cut ? utf8_cut_length(message, kMessageCapacity - 4) : message.size();
    std::memcpy(error_, message.data(), n);
    if (cut) std::memcpy(error_ + n, "...", 3);
    error_[cut ? n + 3 : n] = '\0';
    error_state_.store(2, std::memory_order_release);
  }
  finished_.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(finished_);
}

}  // namespace tilepool
