// tilepool._core: the extension under the `tilepool` package (python/tilepool/__init__.py is
// the public API). Named segments, the kernels, and a Pool whose jobs run through the public job
// layer (run_job) on a thread of their own, with the GIL released.
#include <Python.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>

#include <fmt/format.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "arrays.hpp"
#include "job_thread.hpp"
#include "segments.hpp"
#include "tilepool/runner/job.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/escape.hpp"
#include "tilepool/shared/interrupt.hpp"
#include "tilepool/workers/plugin.hpp"
#include "tilepool/workers/worker.hpp"

namespace tilepool::python {
namespace {

using namespace std::chrono_literals;

// --- errors ---------------------------------------------------------------------------------

struct ErrorTypes {
  PyObject* base = nullptr;       // TilepoolError(Exception)
  PyObject* usage = nullptr;      // UsageError(TilepoolError, ValueError)
  PyObject* bad_input = nullptr;  // BadInput(TilepoolError, ValueError)
  PyObject* exists = nullptr;     // Exists(BadInput, FileExistsError)
  PyObject* no_space = nullptr;   // NoSpace(TilepoolError, OSError)
  PyObject* system = nullptr;     // OSFailure(TilepoolError, OSError)
  PyObject* job_failed = nullptr; // JobFailed(TilepoolError, RuntimeError)
};
ErrorTypes error_types;

PyObject* new_error_type(py::module_& m, const char* name, const char* doc, std::initializer_list<PyObject*> bases) {
  py::tuple base_tuple(bases.size());
  std::size_t i = 0;
  for (PyObject* b : bases) base_tuple[i++] = py::reinterpret_borrow<py::object>(b);
  PyObject* type = PyErr_NewExceptionWithDoc(fmt::format("tilepool.{}", name).c_str(), doc, base_tuple.ptr(), nullptr);
  if (type == nullptr) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(type));
  return type;  // the module keeps a reference for the interpreter's life
}

// The keyword of Python's API that a SpecError's field is about.
const char* keyword_of(JobField field) {
  switch (field) {
    case JobField::kernel: return "kernel";
    case JobField::input: return "input";
    case JobField::output: return "out";
    case JobField::tile: return "tile";
    case JobField::params: return "params";
    case JobField::workers: return "workers";
    case JobField::mode: return "mode";
    case JobField::backing: return "backing";
    case JobField::tile_timeout: return "tile_timeout";
    case JobField::plugin: return "plugins";
    case JobField::none: break;
  }
  return "";
}

// The message: the library's text (the CLI's, without `tilepool: error:`), with the keyword
// the caller used in front where the library names a field of the job.
std::string message_of(const Error& e) {
  std::string text = e.what();
  if (const auto* spec = dynamic_cast<const SpecError*>(&e); spec != nullptr && spec->field() != JobField::none) {
    std::string value = spec->value();
    // The job layer writes a tile as "4,4": Python callers wrote (4, 4).
    if (spec->field() == JobField::tile && !value.empty()) {
      std::string extents;
      for (const char c : value) extents += c == ',' ? std::string(", ") : std::string(1, c);
      value = value.find(',') == std::string::npos ? fmt::format("=({},)", extents) : fmt::format("=({})", extents);
    }
    if (spec->field() == JobField::tile_timeout && !value.empty()) value = "=" + value;  // tile_timeout=0.5
    const std::string keyword = keyword_of(spec->field());
    if (text.starts_with(keyword + ":") || text.starts_with(keyword + " (")) {
      // Named already, as the caller wrote it ("out: is float64 (5,); ...").
    } else if (value.empty() || text.starts_with(value)) {
      text = fmt::format("{}: {}", keyword, text);
    } else if (value.starts_with("=")) {
      text = fmt::format("{}{}: {}", keyword, value, text);
    } else {
      text = fmt::format("{} {}: {}", keyword, value, text);
    }
  }
  if (e.code() == Errc::no_space) text += " (free space there, or pass backing='file:DIR' for a store with more room)";
  if (e.code() == Errc::exists && dynamic_cast<const SpecError*>(&e) != nullptr) text += " (pass force=True to overwrite)";
  return text;
}

void raise_error(const Error& e) {
  PyObject* type = error_types.base;
  switch (e.code()) {
    case Errc::usage: type = error_types.usage; break;
    case Errc::bad_input: type = error_types.bad_input; break;
    case Errc::exists: type = error_types.exists; break;
    case Errc::no_space: type = error_types.no_space; break;
    case Errc::system: type = error_types.system; break;
    case Errc::job_failed: type = error_types.job_failed; break;
    case Errc::interrupted: type = PyExc_KeyboardInterrupt; break;
  }
  PyErr_SetString(type, message_of(e).c_str());
}

// --- the pool ---------------------------------------------------------------------------------

// Tiles done and total, written by the job layer's progress callback on the job thread and read
// by the waiting Python thread.
struct Progress {
  std::atomic<std::int64_t> done{0};
  std::atomic<std::int64_t> total{-1};
};

Shape shape_from(const py::handle& obj) {
  if (py::isinstance<py::int_>(obj)) return Shape{obj.cast<std::int64_t>()};
  Shape out;
  for (const py::handle extent : obj) out.push_back(extent.cast<std::int64_t>());
  return out;
}

// A parameter's value as `--param key=value` text.
std::string param_text(const py::handle& value) {
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>() ? "true" : "false";
  // Python float repr: the shortest text that reads back to the same double (numpy scalars too).
  if (py::isinstance<py::float_>(value)) return py::repr(py::float_(py::reinterpret_borrow<py::object>(value))).cast<std::string>();
  return py::str(value).cast<std::string>();
}

/// A tilepool::Pool driven from Python. Its tilepool::Pool lives on a JobThread (see
/// job_thread.hpp for why). Jobs from several Python threads serialise on `jobs_`.
class PoolHandle {
 public:
  PoolHandle(int workers, const std::string& mode, const py::object& backing, const std::vector<std::string>& plugins,
             double tile_timeout_s, const std::string& worker_executable, bool measure_memory)
      : measure_memory_(measure_memory) {
    PoolOptions options;
    options.workers = workers;
    try {
      options.mode = parse_mode(mode);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("mode='{}': {}", mode, e.what()));
    }
    if (!backing.is_none()) options.backing = Backing::parse(backing.cast<std::string>());
    backing_ = options.backing;
    if (std::isnan(tile_timeout_s)) {
      throw Error(Errc::usage, fmt::format("tile_timeout=nan: not a number: expected 0 (no timeout) to {:.0f} seconds",
                                           kMaxTileTimeoutSeconds));
    }
    if (tile_timeout_s < 0 || !std::isfinite(tile_timeout_s) || tile_timeout_s > kMaxTileTimeoutSeconds) {
      // The command line's range (--tile-timeout): past it the milliseconds overflowed and
      // every tile was "killed after the tile timeout".
      throw Error(Errc::usage, fmt::format("tile_timeout={}: out of range: expected 0 (no timeout) to {:.0f} seconds", tile_timeout_s,
                                           kMaxTileTimeoutSeconds));
    }
    options.tile_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(tile_timeout_s * 1000)));
    options.worker_executable = worker_executable;
    // PSS is sampled only when asked for (Pool(measure_memory=True)): walking the page tables
    // of every process after each job costs more than a small job itself.
    options.sample_memory = measure_memory;
    options_ = options;
    thread_ = std::make_unique<JobThread>();
    // Loading the plugins and starting the workers happen on the pool's thread, and Ctrl-C
    // (Python's handler takes it) sets start_cancel_, which that thread's waits see: a plugin
    // that hangs while it loads, or hundreds of workers starting, stop at once.
    thread_->post([this, plugins] {
      const CancelScope cancellable(&start_cancel_);
      for (const std::string& p : plugins) plugins_.emplace_back(load_plugin(p).path);
      start_pool();
    });
    try {
      wait_for_job(&start_cancel_, nullptr, py::none());
    } catch (...) {
      stop();
      throw;
    }
  }

  ~PoolHandle() {
    if (inherited()) {
      // A fork's copy: the pool's thread is not in this process (stopping it waited for good)
      // and its workers are the parent's. Let both be.
      (void)thread_.release();
      if (pool_) (void)new Pool(std::move(*pool_));
      return;
    }
    stop();
    release_deferred();
  }
  PoolHandle(const PoolHandle&) = delete;
  PoolHandle& operator=(const PoolHandle&) = delete;

  py::object run(const std::string& kernel, const py::tuple& inputs, const py::object& out, const py::object& tile,
                 const py::dict& params, const py::object& progress, bool force, bool check_regions) {
    refuse_if_inherited();
    std::unique_lock lock(jobs_, std::try_to_lock);
    if (!lock.owns_lock()) {  // another Python thread's job: wait for it without the GIL
      py::gil_scoped_release nogil;
      lock.lock();
    }
    if (thread_) thread_->rethrow_if_failed();
    if (!pool_) throw Error(Errc::usage, "the pool is closed");
    // Declared first, so that it runs after the spec (and the references its arrays hold) is gone.
    struct ReleaseDeferred {
      ~ReleaseDeferred() { release_deferred(); }
    } release_at_exit;
    CallerArrays arrays;
    JobSpec spec;
    spec.kernel = kernel;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      // The same object twice (add(x, x)) is one source: the job layer opens it once.
      std::size_t same = 0;
      while (same < i && !inputs[same].is(inputs[i])) ++same;
      spec.inputs.push_back(same < i ? spec.inputs[same] : source_for(inputs[i], fmt::format("input {}", i + 1), backing_, arrays));
    }
    spec.output = target_for(out, backing_, arrays);
    if (!tile.is_none()) spec.tile = shape_from(tile);
    for (const auto& [key, value] : params) spec.params.add(py::str(key), param_text(value));
    spec.plugins = plugins_;
    spec.measure_memory = measure_memory_;
    spec.force = force;
    spec.check_regions = check_regions;
    auto state = std::make_shared<Progress>();
    if (!progress.is_none()) {
      spec.progress = [state](std::int64_t done, std::int64_t total) {
        state->done.store(done, std::memory_order_relaxed);
        state->total.store(total, std::memory_order_release);
      };
    }
    auto cancel = std::make_unique<std::atomic<bool>>(false);
    spec.cancel = cancel.get();

    JobReport report;
    thread_->post([this, &spec, &report] { report = run_job(spec, &*pool_); });
    // Returns (or throws) once run_job has: a cancelled or failed job's workers no longer touch
    // its arrays then (the job layer waits for them or stops them), so they go with this call.
    wait_for_job(cancel.get(), state.get(), progress);

    if (arrays.out_stand_in) py::module_::import("numpy").attr("copyto")(arrays.out, arrays.out_stand_in);
    report.bytes_copied += arrays.bytes_converted;
    // The JSON is made when Python reads last_report (a job's worth of time on small jobs).
    last_job_ = report;
    last_job_->result = AnyArray();  // the report must not keep the result's memory
    last_report_.clear();
    if (!progress.is_none()) progress(report.tiles, report.tiles);
    if (out.is_none()) {
      if (report.result.data() == nullptr && report.result.size() != 0) throw Error(Errc::job_failed, "the job returned no result array");
      return to_ndarray(JobArray{report.result, "", {}, std::nullopt}, false);
    }
    if (arrays.out) return arrays.out;
    return py::none();
  }

  /// Stops the workers; the pool refuses jobs afterwards. Waits for a running job (from another
  /// thread) to finish first.
  void close() {
    if (inherited()) return;  // the parent's to close
    {
      py::gil_scoped_release nogil;
      std::lock_guard lock(jobs_);
      stop();
    }
    release_deferred();
  }

  // What Python reads of the pool, kept beside it: the pool itself is touched only on its thread
  // (it is replaced there after Ctrl-C while Python may be reading these).
  [[nodiscard]] bool closed() const { return inherited() || closed_.load(); }
  [[nodiscard]] const std::string& last_report() {
    if (last_report_.empty() && last_job_) last_report_ = report_json(*last_job_);
    return last_report_;
  }
  [[nodiscard]] std::string mode() const { return closed() ? "" : std::string(mode_name(options_.mode)); }
  [[nodiscard]] int workers() const { return closed() ? 0 : workers_.load(); }
  [[nodiscard]] double spawn_seconds() const { return closed() ? 0.0 : spawn_seconds_.load(); }
  /// Waits for a running job to finish.
  [[nodiscard]] std::vector<pid_t> worker_pids() {
    refuse_if_inherited();
    py::gil_scoped_release nogil;
    std::lock_guard lock(jobs_);
    if (!thread_) return {};
    thread_->wait();
    return pool_ ? pool_->worker_pids() : std::vector<pid_t>{};
  }

 private:
  // A pool does not cross fork: its thread and its workers stay with the process that made it
  // (before, a forked child that used or dropped one waited for that thread for good).
  [[nodiscard]] bool inherited() const { return ::getpid() != owner_; }
  void refuse_if_inherited() const {
    if (inherited()) {
      throw Error(Errc::usage, fmt::format("this Pool belongs to process {}, which forked this one: pools do not cross fork "
                                           "(make a Pool in this process)", owner_));
    }
  }

  // Waits for the posted task with the GIL released, waking every 50 ms to run Python's signal
  // handlers (Ctrl-C raises KeyboardInterrupt there: the job is cancelled, waited for, and the
  // KeyboardInterrupt propagates) and to report progress. Rethrows the task's error.
  void wait_for_job(std::atomic<bool>* cancel, const Progress* progress, const py::object& callback) {
    std::int64_t shown = -1;
    for (;;) {
      bool finished = false;
      {
        py::gil_scoped_release nogil;
        finished = thread_->wait_for(50ms);
      }
      if (finished) break;
      try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (progress != nullptr && !callback.is_none()) {
          const std::int64_t total = progress->total.load(std::memory_order_acquire);
          const std::int64_t done = progress->done.load(std::memory_order_relaxed);
          if (total >= 0 && done != shown) {
            shown = done;
            callback(done, total);
          }
        }
      } catch (...) {
        // Ctrl-C, or the progress callback raised: stop the job, wait for it to clean up, and
        // raise what Python raised (the job's own 'interrupted' error says less).
        if (cancel != nullptr) cancel->store(true);
        {
          py::gil_scoped_release nogil;
          thread_->wait();
        }
        try {
          thread_->rethrow_if_failed();
        } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): superseded by the Python exception
        }
        throw;
      }
    }
    thread_->rethrow_if_failed();
  }

  // On the pool's thread: starts the pool and notes what Python may read of it.
  void start_pool() {
    (void)collect_garbage(options_.backing);  // a runner sweeps dead owners' leftovers when it starts
    pool_.emplace(Pool::start(options_));
    workers_.store(pool_->worker_count());
    spawn_seconds_.store(pool_->spawn_seconds());
    closed_.store(false);
  }

  // Destroys the tilepool::Pool on its own thread, then ends that thread. Never throws.
  void stop() noexcept {
    closed_.store(true);
    if (!thread_) return;
    thread_->wait();
    thread_->post([this] { pool_.reset(); });
    thread_->wait();
    thread_.reset();
  }

  pid_t owner_ = ::getpid();
  std::mutex jobs_;
  PoolOptions options_;
  std::atomic<bool> closed_{true};
  std::atomic<bool> start_cancel_{false};
  std::atomic<int> workers_{0};
  std::atomic<double> spawn_seconds_{0};
  std::unique_ptr<JobThread> thread_;
  std::optional<Pool> pool_;  // touched only on thread_
  Backing backing_;
  std::vector<std::filesystem::path> plugins_;
  std::optional<JobReport> last_job_;  // without its result array
  std::string last_report_;            // its JSON, once asked for
  bool measure_memory_ = false;
};

py::list kernels(const std::vector<std::string>& plugins) {
  if (!plugins.empty()) {
    // On a thread of its own, while this one runs Python's signal handlers: Ctrl-C stops a
    // plugin that hangs while it loads (its probe child is killed) and raises KeyboardInterrupt.
    std::atomic<bool> cancel{false};
    JobThread loader;
    loader.post([&] {
      const CancelScope cancellable(&cancel);
      for (const std::string& p : plugins) (void)load_plugin(p);
    });
    for (;;) {
      bool finished = false;
      {
        py::gil_scoped_release nogil;
        finished = loader.wait_for(50ms);
      }
      if (finished) break;
      if (PyErr_CheckSignals() != 0) {
        cancel.store(true);
        {
          py::gil_scoped_release nogil;
          loader.wait();
        }
        throw py::error_already_set();
      }
    }
    loader.rethrow_if_failed();
  }
  py::list out;
  for (const KernelDef* k : known_kernels()) {
    py::dict d;
    d["name"] = std::string(k->name);
    d["summary"] = std::string(k->summary);
    d["arity"] = k->arity;
    py::list dtypes;
    for (DType dt : k->dtypes) dtypes.append(std::string(dtype_name(dt)));
    d["dtypes"] = dtypes;
    d["reduction"] = k->reduction == Reduction::sum ? py::object(py::str("sum")) : py::object(py::none());
    py::list params;
    for (const ParamDef& p : k->params) {
      py::dict param;
      param["name"] = std::string(p.name);
      param["type"] = std::string(param_type_name(p.type));
      param["default"] = p.default_value.empty() ? py::object(py::none()) : py::object(py::str(std::string(p.default_value)));
      param["meaning"] = std::string(p.meaning);
      params.append(param);
    }
    d["params"] = params;
    const std::string from = plugin_path_of(*k);
    d["plugin"] = from.empty() ? py::object(py::none()) : py::object(py::str(from));
    out.append(d);
  }
  return out;
}

// --- a kernel that ends the interpreter ------------------------------------------------------

// A kernel's output_spec, iteration_shape or input_region runs in this process (threads mode's
// tiles too: the job layer's own handler speaks for those). One that calls exit(),
// std::terminate() or pthread_exit() ends the interpreter: it says so in one line, removes this
// process's job segments and ends it with status 1. Before, exit() ended Python without a word.
std::terminate_handler g_previous_terminate = nullptr;

[[noreturn]] void end_interpreter(const std::string& how) noexcept {
  static std::atomic_flag ending = ATOMIC_FLAG_INIT;
  if (ending.test_and_set()) {
    for (;;) ::pause();
  }
  std::fprintf(stderr, "tilepool: error: %s, which ends the Python process (a kernel must return or throw)\n", one_line(how).c_str());
  std::fflush(stderr);
  remove_own_job_segments(Backing{});
  std::_Exit(1);
}

void on_exit_in_kernel_hook() {
  if (const std::string hook = running_kernel_hook(); !hook.empty()) end_interpreter(hook + " called exit()");
}

// Runs right after on_exit_in_kernel_hook: a second kernel thread that called exit() while the
// first is inside end_interpreter (copy mode runs input_region on several threads) runs the
// handlers the first left and would end Python with the kernel's status (glibc 2.36 runs
// concurrent exit()s side by side: the test saw 3 for 1). Here it waits for the first's _Exit(1).
void exit_barrier_in_kernel_hook() {
  if (!running_kernel_hook().empty()) {
    for (;;) ::pause();
  }
}

[[noreturn]] void on_terminate_in_kernel_hook() {
  if (const std::string hook = running_kernel_hook(); !hook.empty()) {
    end_interpreter(hook + " called std::terminate()" + describe_terminating_exception());
  }
  if (g_previous_terminate != nullptr) g_previous_terminate();
  std::abort();
}

void guard_kernel_hooks() {
  (void)std::atexit(exit_barrier_in_kernel_hook);  // registered first: runs after the next one
  (void)std::atexit(on_exit_in_kernel_hook);
  g_previous_terminate = std::set_terminate(on_terminate_in_kernel_hook);
  set_process_thread_end_handler([](const std::string& how) { end_interpreter(how); });
}

}  // namespace
}  // namespace tilepool::python

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  namespace tp = tilepool::python;
  using tp::error_types;
  using py::arg;
  m.doc() = "tilepool's extension module; use the `tilepool` package.";
  tp::guard_kernel_hooks();

  error_types.base = tp::new_error_type(m, "TilepoolError", "Base of every error tilepool raises.", {PyExc_Exception});
  error_types.usage = tp::new_error_type(m, "UsageError", "A meaningless request: a bad tile, mode, parameter or name.",
                                         {error_types.base, PyExc_ValueError});
  error_types.bad_input = tp::new_error_type(m, "BadInput", "An input is missing, malformed, of the wrong dtype or shape.",
                                             {error_types.base, PyExc_ValueError});
  error_types.exists = tp::new_error_type(m, "Exists", "A segment or file that would be created exists already.",
                                          {error_types.bad_input, PyExc_FileExistsError});
  error_types.no_space = tp::new_error_type(m, "NoSpace", "The backing store (/dev/shm, or backing='file:DIR') is too small.",
                                            {error_types.base, PyExc_OSError});
  error_types.system = tp::new_error_type(m, "OSFailure", "An operating-system call failed.", {error_types.base, PyExc_OSError});
  error_types.job_failed = tp::new_error_type(m, "JobFailed", "A kernel or a worker failed while the job ran.",
                                              {error_types.base, PyExc_RuntimeError});
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const tilepool::Error& e) {
      tp::raise_error(e);
    }
  });

  py::class_<tp::ArrayMemory>(m, "ArrayMemory", "The memory under an ndarray that tilepool made (its .base).")
      .def_property_readonly("name", [](const tp::ArrayMemory& a) { return a.job.segment.empty() ? py::object(py::none()) : py::object(py::str(a.job.segment)); })
      .def_property_readonly("read_only", [](const tp::ArrayMemory& a) { return a.read_only; })
      .def_property_readonly("nbytes", [](const tp::ArrayMemory& a) { return a.job.array.bytes(); });

  tp::add_segment_functions(m);
  m.def("kernels", &tp::kernels, arg("plugins"));
  m.attr("MAX_WORKERS") = tilepool::kMaxWorkers;
  std::vector<std::string> modes;
  for (const std::string_view name : tilepool::mode_names()) modes.emplace_back(name);
  m.attr("MODES") = modes;

  py::class_<tp::PoolHandle>(m, "Pool")
      .def(py::init<int, const std::string&, const py::object&, const std::vector<std::string>&, double, const std::string&, bool>(),
           arg("workers"), arg("mode"), arg("backing"), arg("plugins"), arg("tile_timeout"), arg("worker_executable"),
           arg("measure_memory"))
      .def("run", &tp::PoolHandle::run, arg("kernel"), arg("inputs"), arg("out"), arg("tile"), arg("params"), arg("progress"),
           arg("force"), arg("check_regions"))
      .def("close", &tp::PoolHandle::close)
      .def_property_readonly("closed", &tp::PoolHandle::closed)
      .def_property_readonly("last_report", &tp::PoolHandle::last_report)
      .def_property_readonly("mode", &tp::PoolHandle::mode)
      .def_property_readonly("workers", &tp::PoolHandle::workers)
      .def_property_readonly("spawn_seconds", &tp::PoolHandle::spawn_seconds)
      .def_property_readonly("worker_pids", &tp::PoolHandle::worker_pids);
}
