#include "tilepool/workers/tile_loop.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fmt/format.h>

#include "bind_checked.hpp"
#include "region_window.hpp"
#include "tilepool/shared/error.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/fault_guard.hpp"

namespace tilepool {
namespace {
thread_local ThreadEndHandler t_thread_end = nullptr;
std::atomic<ThreadEndHandler> g_thread_end{nullptr};
// The control block of the job whose tiles this thread runs in LocalJobHandler::run, for a hook
// that ends the thread with no control block at hand (input_region, under --check-regions).
// Not set on copy mode's transport threads: those are the runner's, and the process's handler
// speaks for them.
thread_local ControlBlock* t_job_control = nullptr;

// How a message names the worker that runs this thread: a process of its own, or one of threads
// mode's threads (the only threads with a ThreadEndHandler of their own), whose pid is the
// runner's.
std::string worker_name(int slot) {
  if (t_thread_end != nullptr) return fmt::format("worker thread {} (in the runner, pid {})", slot, ::getpid());
  return fmt::format("worker pid {}", ::getpid());
}
}  // namespace

void set_thread_end_handler(ThreadEndHandler handler) noexcept { t_thread_end = handler; }
void set_process_thread_end_handler(ThreadEndHandler handler) noexcept { g_thread_end.store(handler); }

void end_on_thread_exit(ControlBlock& control, const std::string& how) {
  control.report_error(how);
  if (t_thread_end != nullptr) t_thread_end(how);
  std::_Exit(1);  // a worker process: the runner reports the job's error
}

void end_on_thread_exit(const std::string& how) {
  if (t_job_control != nullptr) end_on_thread_exit(*t_job_control, how);  // the job's error, one line from the runner
  if (t_thread_end != nullptr) t_thread_end(how);
  if (const ThreadEndHandler h = g_thread_end.load(); h != nullptr) h(how);
  std::fprintf(stderr, "tilepool: error: %s\n", one_line(how).c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void serve_jobs(ControlBlock& control, int slot, JobHandler& handler) {
  std::uint32_t seen = 0;
  while (!control.stop_requested()) {
    const std::uint32_t epoch = control.epoch();
    if (epoch == seen) {
      control.wait_for_epoch_change(epoch, std::chrono::milliseconds(500));
      if (!handler.still_wanted()) return;
      continue;
    }
    if (!control.enter_job(slot)) {  // the runner is posting a job right now
      control.wait_for_epoch_change(epoch, std::chrono::milliseconds(1));
      continue;
    }
    seen = epoch;
    const JobDescriptor& job = control.job();
    if (job.job_id != 0) {
      const std::string kernel(job.kernel_name());
      bool bound = false;
      try {
        handler.bind(job);
        bound = true;
      } catch (...) {  // anything a plugin's bind throws, std::exception or not
        if (catching_thread_exit()) {
          end_on_thread_exit(control, fmt::format("kernel {} called pthread_exit() while binding in {} (a kernel "
                                                  "must return or throw)", kernel, worker_name(slot)));
        }
        // Setting up is attaching the job's arrays and binding the kernel: the kind of a
        // tilepool Error (a full store, a replaced or truncated segment, bad parameters) crosses
        // to the runner as it is.
        control.report_error(
            fmt::format("{} could not set up kernel {}: {}", worker_name(slot), kernel, describe_current_exception()),
            current_error_code(), current_error_errno());
      }
      if (bound) {
        try {
          handler.run(control, slot);
        } catch (...) {
          control.report_error(fmt::format("kernel {}, {}: {}", kernel, worker_name(slot), describe_current_exception()));
        }
        // Inside the job, before leaving it: what a kernel's destructor does is part of the job.
        try {
          handler.release();
        } catch (...) {  // a bound kernel's destructor declared noexcept(false)
          control.report_error(fmt::format("kernel {}: destroying its bound kernel in {} failed: {}", kernel, worker_name(slot),
                                           describe_current_exception()));
        }
      }
    }
    control.leave_job(slot);
  }
}

// A job that checks regions: its arrays, and one buffer per input and for the output, in
// which each tile's regions are copied (as copy mode receives them) and the kernel bound anew.
struct LocalJobHandler::CheckedTiles {
  JobArrays arrays;
  std::vector<ArraySpec> inputs;
  Params params;
  std::array<LocalBuffer, kMaxInputs> input_buffers;
  LocalBuffer output_buffer;

  void run_tile(const KernelDef& kernel, const Box& box, TileResult& result) {
    std::vector<AnyArray> windows;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      windows.push_back(window_copy_of(arrays.inputs[i], input_region(kernel, i, box, inputs, params), static_cast<int>(i), input_buffers[i]));
    }
    // A map's tile writes its own box, copied in first so elements the kernel leaves are kept;
    // a reduction's 0-d output is not the tile's to write.
    const bool map = kernel.reduction == Reduction::none;
    const AnyArray output = map ? window_copy_of(arrays.output, box, kOutputWindow, output_buffer) : arrays.output;
    bind_checked(kernel, windows, output, params)->run_tile(box, result);
    if (map) scatter_region(output.data(), box, arrays.output);
  }
};

LocalJobHandler::LocalJobHandler(FindArrays find_arrays, TileObserver observer, std::function<bool()> still_wanted)
    : find_arrays_(std::move(find_arrays)), observer_(std::move(observer)), still_wanted_(std::move(still_wanted)) {}

LocalJobHandler::~LocalJobHandler() = default;

void LocalJobHandler::bind(const JobDescriptor& job) {
  bound_.reset();  // drop the old job's views before finding the new job's arrays
  checked_.reset();
  JobArrays arrays = find_arrays_(job);
  kernel_ = &find_kernel(job.kernel_name());
  // The runner checked the parameters; this fills in the kernel's defaults.
  Params params = check_params(*kernel_, Params::from_text(job.params_text()));
  if (job.check_regions != 0) {
    checked_ = std::make_unique<CheckedTiles>();
    for (const AnyArray& a : arrays.inputs) checked_->inputs.push_back(ArraySpec{a.dtype(), a.shape()});
    checked_->arrays = std::move(arrays);
    checked_->params = std::move(params);
  } else {
    bound_ = bind_checked(*kernel_, arrays.inputs, arrays.output, params);
  }
  grid_ = TileGrid::make(job.shape_vector(), job.tile_vector());
  first_tile_ = job.first_tile;
  TILEPOOL_CHECK(job.first_tile >= 0 && job.tile_count >= 0 && job.tile_count <= grid_.tile_count() - job.first_tile);
}

void LocalJobHandler::release() {
  checked_.reset();
  bound_.reset();
}

void LocalJobHandler::run(ControlBlock& control, int slot) {
  t_job_control = &control;
  struct Unset {
    ~Unset() { t_job_control = nullptr; }
  } unset;
  for (;;) {
    const std::int64_t t = control.claim_next_tile(slot);
    if (t < 0) return;
    const std::int64_t tile = first_tile_ + t;  // the grid's tile that claim index t stands for
    const Box box = grid_.box(tile);
    TileResult result;
    if (observer_) observer_(TilePoint::claimed, tile);
    try {
      // A segment that shrinks under the job (SIGBUS) or a write to a read-only input (SIGSEGV)
      // becomes this tile's error, naming the segment, instead of killing the process.
      guard_faults([&] {
        if (checked_) {
          checked_->run_tile(*kernel_, box, result);
        } else {
          bound_->run_tile(box, result);
        }
      });
    } catch (...) {  // a std::exception, or whatever else a plugin throws ("text", 42)
      if (catching_thread_exit()) {
        end_on_thread_exit(control, fmt::format("kernel {} called pthread_exit() on tile {} {} in {} (a kernel must "
                                                "return or throw)", kernel_->name, tile, format_box(box), worker_name(slot)));
      }
      control.report_error(fmt::format("kernel {} failed on tile {} {} in {}: {}", kernel_->name, tile, format_box(box),
                                       worker_name(slot), describe_current_exception()),
                           Errc::job_failed, current_error_errno());
      return;
    }
    if (kernel_->reduction != Reduction::none) control.partial(t) = TilePartial{result.f64, result.i64};
    if (observer_) observer_(TilePoint::written, tile);
    control.complete_tile(slot, t);
  }
}

const ArraySegment& SegmentCache::get(const std::string& name, const Backing& backing, bool read_only,
                                      std::optional<SegmentIdentity> expected) {
  const std::string path = backing.path_of(name).string();
  auto it = entries_.find(path);
  if (expected) {
    // Pinned: the object the job started with, whatever the name holds now. A mapping of it
    // is good as long as it was made with the same access.
    if (it != entries_.end() && it->second.segment.segment().identity() == *expected && it->second.read_only == read_only) {
      return it->second.segment;
    }
  } else {
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    if (it != entries_.end() && exists && it->second.segment.segment().identity().inode == st.st_ino &&
        it->second.read_only == read_only) {
      return it->second.segment;
    }
  }
  if (it != entries_.end()) entries_.erase(it);
  ArraySegment seg = ArraySegment::attach(name, backing,
                                          MapOptions{.populate = false, .read_only = read_only, .expected_identity = expected});
  return entries_.emplace(path, Entry{std::move(seg), read_only}).first->second.segment;
}

JobArrays SegmentCache::arrays_of(const JobDescriptor& job) {
  struct Located {
    std::string name;
    Backing backing;
  };
  std::vector<Located> located;
  for (std::uint32_t i = 0; i < job.input_count; ++i) {
    located.push_back({std::string(job.input_name(i)), Backing::from_spec(job.input_backing_spec(i))});
  }
  located.push_back({std::string(job.output_name()), Backing::from_spec(job.output_backing_spec())});
  std::erase_if(entries_, [&](const auto& kv) {
    return std::none_of(located.begin(), located.end(),
                        [&](const Located& l) { return l.backing.path_of(l.name).string() == kv.first; });
  });
  // Every array was checked by the runner before the job started: one a worker cannot attach as
  // it was (removed, replaced, resized, unreadable) changed while the job ran, and the job failed
  // (exit 1) as it does when the runner sees an input file change, not bad input (exit 2).
  const auto changed_mid_job = [](const Error& e, std::string_view prefix) {
    return e.code() == Errc::bad_input ? Error(Errc::job_failed, fmt::format("{}{}", prefix, e.what()), e.sys_errno()) : e;
  };
  JobArrays arrays;
  // Inputs are mapped read-only: a kernel that writes into one faults (a clean job failure)
  // instead of changing the user's data, and a segment the user may only read works.
  for (std::size_t i = 0; i + 1 < located.size(); ++i) {
    try {
      arrays.inputs.push_back(get(located[i].name, located[i].backing, /*read_only=*/true, job.input_identity(i)).array());
    } catch (const Error& e) {
      throw changed_mid_job(e, "");
    }
  }
  // The output is the job's own (the runner made it; the user's name is published at the end).
  try {
    arrays.output = get(located.back().name, located.back().backing, /*read_only=*/false, job.pinned_output_identity()).array();
  } catch (const Error& e) {
    throw changed_mid_job(e, "the job's output: ");
  }
  return arrays;
}

std::string format_box(const Box& box) {
  std::string s = "[";
  for (int a = 0; a < box.ndim; ++a) {
    const auto i = static_cast<std::size_t>(a);
    s += fmt::format("{}{}:{}", a > 0 ? ", " : "", box.lo[i], box.hi[i]);
  }
  return s + "]";
}

}  // namespace tilepool

namespace tilepool {
namespace {

TileObserverFactory& tile_observer_factory() {
  static TileObserverFactory factory;
  return factory;
}

}  // namespace

void set_tile_observer_factory(TileObserverFactory factory) { tile_observer_factory() = std::move(factory); }

TileObserver make_tile_observer() {
  const TileObserverFactory& factory = tile_observer_factory();
  return factory ? factory() : TileObserver{};
}

}  // namespace tilepool
