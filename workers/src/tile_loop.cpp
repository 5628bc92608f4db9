#include "tilepool/workers/tile_loop.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "tilepool/shared/error.hpp"

namespace tilepool {
namespace {

// The armed fault, if any: set once at worker start-up, read-only afterwards.
std::optional<FaultPlan> g_fault;

void maybe_fault(FaultPoint point, std::int64_t tile) {
  if (!g_fault || g_fault->point != point || g_fault->tile != tile) return;
  if (!g_fault->once_file.empty()) {
    const int fd = ::open(g_fault->once_file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return;  // another worker faulted already
    ::close(fd);
  }
  ::raise(point == FaultPoint::hang ? SIGSTOP : SIGKILL);
}

std::string text_of(const char* field, std::size_t capacity) { return std::string(field, strnlen(field, capacity)); }

BoundJob make_bound(const JobDescriptor& job, std::span<const AnyArray> inputs, const AnyArray& output) {
  BoundJob b;
  b.job_id = job.job_id;
  b.kernel = &find_kernel(text_of(job.kernel, sizeof job.kernel));
  const Params params = Params::from_text(text_of(job.params, sizeof job.params));
  b.bound = b.kernel->bind(inputs, output, params);
  const Shape tile = job.tile_vector();
  b.grid = TileGrid::make(job.shape_vector(), tile);
  TILEPOOL_CHECK(b.grid.tile_count() == job.tile_count);
  return b;
}

}  // namespace

const ArraySegment& SegmentCache::get(const std::string& name, const Backing& backing) {
  struct stat st {};
  const bool exists = ::stat(backing.path_of(name).c_str(), &st) == 0;
  auto it = entries_.find(name);
  if (it != entries_.end() && exists && it->second.inode == st.st_ino) return it->second.segment;
  if (it != entries_.end()) entries_.erase(it);
  ArraySegment seg = ArraySegment::attach(name, backing, MapOptions{.populate = true});
  return entries_.emplace(name, Entry{std::move(seg), static_cast<unsigned long>(st.st_ino)}).first->second.segment;
}

void SegmentCache::retain_only(const JobDescriptor& keep) {
  std::erase_if(entries_, [&](const auto& kv) {
    if (kv.first == text_of(keep.output, sizeof keep.output)) return false;
    for (std::uint32_t i = 0; i < keep.input_count; ++i) {
      if (kv.first == text_of(keep.inputs[i], sizeof keep.inputs[i])) return false;
    }
    return true;
  });
}

BoundJob bind_job(const JobDescriptor& job, std::span<const AnyArray> inputs, const AnyArray& output) {
  return make_bound(job, inputs, output);
}

BoundJob bind_job(const JobDescriptor& job, SegmentCache& cache) {
  const Backing backing = Backing::parse(text_of(job.backing, sizeof job.backing));
  cache.retain_only(job);
  std::vector<AnyArray> inputs;
  for (std::uint32_t i = 0; i < job.input_count; ++i) {
    inputs.push_back(cache.get(text_of(job.inputs[i], sizeof job.inputs[i]), backing).array());
  }
  const AnyArray output = cache.get(text_of(job.output, sizeof job.output), backing).array();
  return make_bound(job, inputs, output);
}

void arm_fault_from_environment() {
  const char* env = std::getenv("TILEPOOL_FAULT");
  if (env == nullptr || *env == '\0') return;
  const std::string spec(env);
  const auto c1 = spec.find(':');
  const auto c2 = spec.find(':', c1 == std::string::npos ? c1 : c1 + 1);
  const std::string point = spec.substr(0, c1);
  FaultPlan plan;
  if (point == "mid_tile") {
    plan.point = FaultPoint::mid_tile;
  } else if (point == "before_done") {
    plan.point = FaultPoint::before_done;
  } else if (point == "hang") {
    plan.point = FaultPoint::hang;
  } else {
    throw Error(Errc::usage, "TILEPOOL_FAULT='" + spec + "': expected mid_tile|before_done|hang:TILE[:ONCE_FILE]");
  }
  try {
    plan.tile = std::stoll(spec.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1));
  } catch (const std::exception&) {
    throw Error(Errc::usage, "TILEPOOL_FAULT='" + spec + "': expected a tile number after the point");
  }
  if (c2 != std::string::npos) plan.once_file = spec.substr(c2 + 1);
  g_fault = plan;
}

std::string format_box(const Box& box) {
  std::string s = "[";
  for (int a = 0; a < box.ndim; ++a) {
    if (a > 0) s += ", ";
    s += std::to_string(box.lo[static_cast<std::size_t>(a)]) + ":" + std::to_string(box.hi[static_cast<std::size_t>(a)]);
  }
  return s + "]";
}

void serve_jobs(ControlBlock& control, int slot, const std::function<BoundJob(const JobDescriptor&)>& bind,
                const std::function<bool()>& on_idle) {
  BoundJob job;
  std::uint32_t seen = 0;
  while (!control.stop_requested()) {
    const std::uint32_t epoch = control.epoch();
    if (epoch == seen) {
      control.wait_for_epoch_change(epoch, std::chrono::milliseconds(500));
      if (on_idle && !on_idle()) return;
      continue;
    }
    if (!control.enter_job()) {  // the runner is posting a job right now
      control.wait_for_epoch_change(epoch, std::chrono::milliseconds(1));
      continue;
    }
    seen = epoch;
    const JobDescriptor& desc = control.job();
    if (desc.job_id != 0) {
      try {
        if (job.job_id != desc.job_id) {
          job = BoundJob{};  // drop the old job's views before attaching the new ones
          job = bind(desc);
        }
        run_tiles(control, slot, job);
      } catch (const std::exception& e) {
        control.report_error("worker pid " + std::to_string(::getpid()) + " could not set up kernel " +
                             std::string(desc.kernel) + ": " + e.what());
      }
    }
    control.leave_job();
  }
}

void run_tiles(ControlBlock& control, int slot, BoundJob& job) {
  for (;;) {
    const std::int64_t t = control.claim_next_tile(slot);
    if (t < 0) return;
    const Box box = job.grid.box(t);
    TileResult result;
    if (g_fault) {
      maybe_fault(FaultPoint::mid_tile, t);
      maybe_fault(FaultPoint::hang, t);
    }
    try {
      job.bound->run_tile(box, result);
    } catch (const std::exception& e) {
      control.report_error("kernel " + std::string(job.kernel->name) + " failed on tile " + std::to_string(t) + " " +
                           format_box(box) + " in worker pid " + std::to_string(::getpid()) + ": " + e.what());
      return;
    }
    if (job.kernel->reduction != Reduction::none) control.partial(t) = TilePartial{result.f64, result.i64};
    if (g_fault) maybe_fault(FaultPoint::before_done, t);
    control.complete_tile(slot, t);
  }
}

}  // namespace tilepool
