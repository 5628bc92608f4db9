#pragma once
// Private to runner/: the interface each mode implements, and the job preparation they share.

#include <sys/types.h>

#include <vector>

#include "tilepool/runner/pool.hpp"
#include "tilepool/shared/control_block.hpp"
#include "tilepool/workers/tile_loop.hpp"

namespace tilepool::detail {

/// A job checked against its kernel: the output it needs and the tile grid it runs over.
struct PreparedJob {
  const KernelDef* kernel = nullptr;
  ArraySpec output;
  TileGrid grid;
};

/// Validates a job (kernel, arity, dtypes, shapes, output, tile) without running it.
PreparedJob prepare(const JobRequest& job, std::int64_t tile_capacity);

/// The job's description for a control block.
JobDescriptor describe(const JobRequest& job, const PreparedJob& prepared, const Backing& backing, std::uint64_t job_id);

/// Sleeps until the posted job completes or fails, calling `supervise` between short waits
/// (it checks workers and may throw). Throws Error(job_failed) with the first error's message.
/// `job.progress`, if set, hears how far the job got. Throws Error(interrupted) on SIGINT/SIGTERM
/// once install_interrupt_handlers() ran.
void wait_for_job(ControlBlock& control, const JobRequest& job, const std::function<void()>& supervise);

/// The stats every mode reports from its control block after a job completed.
JobStats stats_of(const ControlBlock& control, const PreparedJob& prepared);

/// Adds the per-tile partials in tile order into a reduction's 0-d output.
void finish_reduction(ControlBlock& control, const PreparedJob& prepared, const AnyArray& output);

/// Seconds between two CLOCK_MONOTONIC readings in a control block (0 if either is unset).
double seconds_between(std::int64_t from_ns, std::int64_t to_ns) noexcept;

/// Memory for a control block that is not a named segment: 64-byte aligned, zeroed, shareable
/// with forked children (MAP_SHARED | MAP_ANONYMOUS). Move-only; unmaps on destruction.
class AnonymousRegion {
 public:
  explicit AnonymousRegion(std::size_t bytes);
  AnonymousRegion(AnonymousRegion&& o) noexcept;
  AnonymousRegion& operator=(AnonymousRegion&&) = delete;
  AnonymousRegion(const AnonymousRegion&) = delete;
  AnonymousRegion& operator=(const AnonymousRegion&) = delete;
  ~AnonymousRegion();
  [[nodiscard]] void* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The tilepool-worker executable: PoolOptions::worker_executable, else $TILEPOOL_WORKER, else
/// beside this executable. Throws Error(system) if it cannot be run.
std::filesystem::path find_worker_executable(const PoolOptions& options);

/// One mode's machinery behind Pool.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual JobStats run(const JobRequest& job, const PreparedJob& prepared) = 0;
  [[nodiscard]] virtual Mode mode() const noexcept = 0;
  [[nodiscard]] virtual int worker_count() const noexcept = 0;
  [[nodiscard]] virtual double spawn_seconds() const noexcept { return 0; }
  [[nodiscard]] virtual std::vector<pid_t> worker_pids() const { return {}; }
  [[nodiscard]] virtual std::int64_t tile_capacity() const noexcept = 0;
};

std::unique_ptr<Executor> make_share_executor(const PoolOptions& options, const JobRequest* first_job);
std::unique_ptr<Executor> make_thread_executor(const PoolOptions& options);
std::unique_ptr<Executor> make_fork_executor(const PoolOptions& options);
std::unique_ptr<Executor> make_copy_executor(const PoolOptions& options);

/// "signal 9 (Killed)" or "exit status 2", from a waitpid() status.
std::string describe_wait_status(int status);

}  // namespace tilepool::detail
