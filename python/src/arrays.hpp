#pragma once
// ndarrays <-> tilepool arrays: the ndarrays tilepool makes (over segments, over a job's
// output) and the array sources and targets a job gets from what a Python caller passes.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tilepool/runner/job.hpp"

namespace tilepool::python {

namespace py = pybind11;

/// The memory under an ndarray that tilepool made: the base object of that ndarray. Holds the
/// JobArray (its AnyArray keeps the mapping alive: the ndarray stays valid after the segment's
/// name is removed, until Python drops the last array over it). `job.segment` is the segment's
/// name ("" for a job's output, whose name was removed when the job ended). Immutable;
/// safe to share across threads.
struct ArrayMemory {
  JobArray job;
  bool read_only = false;
};

/// An ndarray over `job`'s memory whose base is an ArrayMemory holding `job` (C order;
/// read-only when `read_only`).
py::array to_ndarray(JobArray job, bool read_only);

/// The numpy dtype of `dtype`.
py::dtype numpy_dtype(DType dtype);

/// A reference to a Python object that C++ owners of its memory share (AnyArray's owner). Whoever
/// lets go of the last owner drops the reference later (release_deferred); CallerArrays drops
/// it at once when the job is over, even if a worker thread still holds a (now unused) view.
struct PythonRef {
  std::atomic<PyObject*> object;
};

/// What a job needs to keep alive while it runs, and what it copied to make inputs usable. Lives
/// on the Python thread, with the GIL, for the length of one run() call: when it goes, the job
/// is over (run_job has returned: no worker touches its arrays), and it drops every reference
/// the job took to the caller's arrays.
struct CallerArrays {
  CallerArrays() = default;
  CallerArrays(const CallerArrays&) = delete;
  CallerArrays& operator=(const CallerArrays&) = delete;
  ~CallerArrays();
  /// The arrays over tilepool segments that the job uses in place (their mappings are not
  /// PythonRefs): kept for the job.
  std::vector<py::object> keep;
  /// The references the job's arrays hold (owner_of).
  std::vector<std::shared_ptr<PythonRef>> refs;
  /// Bytes this module copied itself (non-contiguous, Fortran-order or big-endian arrays made
  /// C-order little-endian): added to the report's bytes_copied.
  std::uint64_t bytes_converted = 0;
  /// A C-order stand-in for a non-contiguous `out=` array, copied into `out` after success.
  py::object out_stand_in;
  py::object out;
};

/// The source for one input as a Python caller gave it: a path or "shm:NAME" string, an
/// ndarray over a tilepool segment (goes by name), an np.memmap / np.load(mmap_mode=) of a whole
/// .npy file (goes by path), or any other array of a supported dtype (array_source: used in
/// place where the mode can reach it, copied once into a job segment where not).
/// `what` names it in messages ("input 2").
std::shared_ptr<ArraySource> source_for(py::handle input, const std::string& what, const Backing& backing, CallerArrays& arrays);

/// The target for `out=`: None (a new array), a path or "shm:NAME" string, or a writable
/// ndarray (written in place where the mode can, else copied in after success).
std::shared_ptr<OutputTarget> target_for(py::handle out, const Backing& backing, CallerArrays& arrays);

/// Drops the references that arrays let go of on the job thread. Needs the GIL.
void release_deferred();

/// True for str, bytes and os.PathLike objects; sets `text` to the path.
bool as_path_text(py::handle obj, std::string& text);

/// The dtype of an ndarray's elements as tilepool knows it. Throws Error(bad_input) naming
/// `what` for an unsupported one.
DType dtype_of(const py::array& array, const std::string& what);

}  // namespace tilepool::python
