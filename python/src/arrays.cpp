#include "arrays.hpp"

#include <sys/stat.h>

#include <array>
#include <cstring>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include "tilepool/shared/npy.hpp"

namespace tilepool::python {
namespace {

// References to Python objects that a job's arrays held, dropped by whichever thread let go of
// the array (often the job thread, which must not take the GIL: the Python thread may be
// waiting for it). The Python thread releases them after each job (release_deferred).
std::mutex deferred_mutex;
std::vector<PyObject*>& deferred() {
  static auto* objects = new std::vector<PyObject*>();  // never destroyed: outlives the interpreter's teardown
  return *objects;
}

// An owner for AnyArray that keeps `object` (whose buffer the array is) alive until the job is
// over (~CallerArrays) or the last owner goes, whichever comes first.
std::shared_ptr<const void> owner_of(py::object object, CallerArrays& arrays) {
  auto ref = std::shared_ptr<PythonRef>(new PythonRef{object.release().ptr()}, [](PythonRef* r) {
    if (PyObject* o = r->object.exchange(nullptr)) {
      std::lock_guard lock(deferred_mutex);
      deferred().push_back(o);
    }
    delete r;
  });
  arrays.refs.push_back(ref);
  return ref;
}

Shape shape_of(const py::array& a) {
  return Shape(a.shape(), a.shape() + a.ndim());
}

bool is_c_order_native(const py::array& a, DType dtype, bool big_endian) {
  const auto addr = reinterpret_cast<std::uintptr_t>(a.data());
  return !big_endian && (a.flags() & py::array::c_style) != 0 && addr % dtype_size(dtype) == 0;
}

const py::object& numpy() {
  static auto* module = new py::object(py::module_::import("numpy"));
  return *module;
}

// The ArrayMemory at the bottom of `a`'s chain of bases, if tilepool made the memory.
const ArrayMemory* memory_of(const py::array& a) {
  py::object base = a.base();
  while (base && py::isinstance<py::array>(base)) base = py::reinterpret_borrow<py::array>(base).base();
  if (base && py::isinstance<ArrayMemory>(base)) return base.cast<const ArrayMemory*>();
  return nullptr;
}

// True if the segment `job` was made from still has its name (delete() was not called, nor the
// name given to another object since): workers can then attach it by that name.
bool still_named(const JobArray& job) {
  if (job.segment.empty() || !job.identity || job.backing.is_descriptors()) return false;
  struct stat st {};
  if (::stat(job.backing.path_of(job.segment).c_str(), &st) != 0) return false;
  return static_cast<std::uint64_t>(st.st_dev) == job.identity->device && static_cast<std::uint64_t>(st.st_ino) == job.identity->inode;
}

// True if `a` is exactly the array `m` holds (not a slice, reshape or dtype view of it).
bool is_whole(const py::array& a, const ArrayMemory& m) {
  const AnyArray& whole = m.job.array;
  if (a.data() != whole.data() || (a.flags() & py::array::c_style) == 0) return false;
  if (shape_of(a) != whole.shape()) return false;
  const auto info = parse_typestr(py::str(a.dtype().attr("str")).cast<std::string>());
  return info && !info->big_endian && info->dtype == whole.dtype();
}

// The .npy file `a` maps, when `a` is an np.memmap (np.load(mmap_mode=...) makes one) of the
// whole array of that file, sharing the file's pages (not mode 'c', whose writes are private).
// Whether the file mapped at `start` in this process is the one `path` names now. A file
// replaced since it was mapped (renamed over, or deleted and made again) is another file: its
// array is the mapping's, not the path's.
bool mapping_is_file(const void* start, const std::string& path) {
  struct stat st {};
  const std::optional<SegmentIdentity> mapped = mapped_object_at(start);
  return mapped && ::stat(path.c_str(), &st) == 0 && mapped->device == static_cast<std::uint64_t>(st.st_dev) &&
         mapped->inode == static_cast<std::uint64_t>(st.st_ino);
}

std::optional<std::string> npy_file_of(const py::array& a) {
  static auto* memmap_type = new py::object(numpy().attr("memmap"));
  if (PyObject_IsInstance(a.ptr(), memmap_type->ptr()) != 1) return std::nullopt;
  const py::object filename = py::getattr(a, "filename", py::none());
  const py::object mode = py::getattr(a, "mode", py::none());
  const py::object mm = py::getattr(a, "_mmap", py::none());
  const py::object offset = py::getattr(a, "offset", py::none());
  if (filename.is_none() || mm.is_none() || offset.is_none() || (a.flags() & py::array::c_style) == 0) return std::nullopt;
  if (!mode.is_none() && py::str(mode).cast<std::string>() == "c") return std::nullopt;
  const std::string path = py::str(filename);
  npy::Header header;
  try {
    header = npy::read_file_header(path);
  } catch (const Error&) {
    return std::nullopt;  // a raw memmap, not an .npy file: its memory is used as any array's
  }
  const auto info = parse_typestr(py::str(a.dtype().attr("str")).cast<std::string>());
  if (!info || info->big_endian || header.big_endian || info->dtype != header.dtype || header.shape != shape_of(a)) return std::nullopt;
  const auto off = offset.cast<std::size_t>();
  if (off != header.data_offset) return std::nullopt;
  // np.memmap maps from `offset` rounded down to mmap.ALLOCATIONGRANULARITY; the array starts
  // offset % granularity bytes into that mapping. A view that starts elsewhere is not the file's array.
  static const auto granularity = py::module_::import("mmap").attr("ALLOCATIONGRANULARITY").cast<std::size_t>();
  const py::buffer_info mapped = py::buffer(mm).request();
  if (static_cast<const std::byte*>(mapped.ptr) + off % granularity != a.data()) return std::nullopt;
  // Before: a file replaced since np.load mapped it was read by its path, so the job read the
  // new file's data instead of the array it was given (of the same shape and dtype), exit 0.
  if (!mapping_is_file(mapped.ptr, path)) return std::nullopt;
  return path;
}

// `a` as C-order, native little-endian, aligned memory (a copy, counted, when it is not).
py::array usable_memory(py::array a, DType dtype, bool big_endian, CallerArrays& arrays) {
  if (is_c_order_native(a, dtype, big_endian)) return a;
  py::array copy = numpy().attr("ascontiguousarray")(a, numpy_dtype(dtype));
  arrays.bytes_converted += static_cast<std::uint64_t>(copy.nbytes());
  return copy;
}

JobArray memory_array(const py::array& a, DType dtype, CallerArrays& arrays) {
  // The job layer may drop its copy of the array on the job thread: it must not decref there.
  return JobArray{AnyArray(owner_of(a, arrays), static_cast<std::byte*>(const_cast<void*>(a.data())), dtype, shape_of(a)), "",
                  {}, std::nullopt};
}

}  // namespace

CallerArrays::~CallerArrays() {
  for (const auto& ref : refs) {
    if (PyObject* o = ref->object.exchange(nullptr)) Py_DECREF(o);
  }
}

void release_deferred() {
  std::vector<PyObject*> objects;
  {
    std::lock_guard lock(deferred_mutex);
    objects.swap(deferred());
  }
  for (PyObject* o : objects) Py_DECREF(o);
}

py::dtype numpy_dtype(DType dtype) {
  static auto* dtypes = [] {
    auto* d = new std::array<py::dtype, kDTypeCount>();
    for (int i = 0; i < kDTypeCount; ++i) (*d)[static_cast<std::size_t>(i)] = py::dtype(std::string(dtype_typestr(static_cast<DType>(i))));
    return d;
  }();
  return (*dtypes)[static_cast<std::size_t>(dtype)];
}

DType dtype_of(const py::array& array, const std::string& what) {
  const std::string typestr = py::str(array.dtype().attr("str"));
  const auto info = parse_typestr(typestr);
  if (!info) {
    throw Error(Errc::bad_input, fmt::format("{}: dtype {} is not supported (bool, int8, int16, int32, int64, uint8, uint16, "
                                             "uint32, uint64, float32, float64)",
                                             what, py::str(array.dtype()).cast<std::string>()));
  }
  return info->dtype;
}

py::array to_ndarray(JobArray job, bool read_only) {
  const DType dtype = job.array.dtype();
  const Shape shape = job.array.shape();
  std::vector<py::ssize_t> extents(shape.begin(), shape.end()), strides(shape.size());
  auto stride = static_cast<py::ssize_t>(dtype_size(dtype));
  for (std::size_t a = shape.size(); a-- > 0;) {
    strides[a] = stride;
    stride *= static_cast<py::ssize_t>(shape[a]);
  }
  std::byte* data = job.array.data();
  py::object base = py::cast(ArrayMemory{std::move(job), read_only});
  py::array result(numpy_dtype(dtype), extents, strides, data, base);
  if (read_only) result.attr("setflags")(py::arg("write") = false);
  return result;
}

bool as_path_text(py::handle obj, std::string& text) {
  if (py::isinstance<py::str>(obj)) {
    text = obj.cast<std::string>();
    return true;
  }
  if (py::isinstance<py::bytes>(obj) || py::hasattr(obj, "__fspath__")) {
    const py::object path = py::module_::import("os").attr("fsdecode")(obj);
    text = path.cast<std::string>();
    return true;
  }
  return false;
}

std::shared_ptr<ArraySource> source_for(py::handle input, const std::string& what, const Backing& backing, CallerArrays& arrays) {
  std::string text;
  if (as_path_text(input, text)) return open_source(text, backing);
  py::array a = py::isinstance<py::array>(input) ? py::reinterpret_borrow<py::array>(input)
                                                 : py::array(numpy().attr("asarray")(input));
  if (const ArrayMemory* m = memory_of(a); m != nullptr && is_whole(a, *m)) {
    arrays.keep.push_back(a);
    if (still_named(m->job)) return array_source(m->job, fmt::format("{} (shm:{})", what, m->job.segment));
    // A job's result, or a segment whose name was deleted: its memory, as any array's.
    return array_source(JobArray{m->job.array, "", {}, std::nullopt}, what);
  }
  if (auto path = npy_file_of(a)) return open_source(*path, backing);
  const DType dtype = dtype_of(a, what);
  const bool big_endian = parse_typestr(py::str(a.dtype().attr("str")).cast<std::string>())->big_endian;
  const py::array usable = usable_memory(a, dtype, big_endian, arrays);
  return array_source(memory_array(usable, dtype, arrays), what);  // its PythonRef keeps it for the job
}

std::shared_ptr<OutputTarget> target_for(py::handle out, const Backing& backing, CallerArrays& arrays) {
  std::string text;
  if (out.is_none()) return new_array_target();
  if (as_path_text(out, text)) return open_target(text, backing);
  if (!py::isinstance<py::array>(out)) {
    throw Error(Errc::usage, fmt::format("out= takes None, a path, 'shm:NAME' or a writable ndarray, not {}",
                                         py::str(py::type::of(out).attr("__name__")).cast<std::string>()));
  }
  const auto a = py::reinterpret_borrow<py::array>(out);
  if (!a.writeable()) throw Error(Errc::bad_input, "out: the array is read-only");
  const DType dtype = dtype_of(a, "out");
  arrays.out = a;
  if (const ArrayMemory* m = memory_of(a); m != nullptr && is_whole(a, *m) && !m->read_only) {
    if (still_named(m->job)) return array_target(m->job, fmt::format("out (shm:{})", m->job.segment));
    return array_target(JobArray{m->job.array, "", {}, std::nullopt}, "out");
  }
  const bool big_endian = parse_typestr(py::str(a.dtype().attr("str")).cast<std::string>())->big_endian;
  if (is_c_order_native(a, dtype, big_endian)) return array_target(memory_array(a, dtype, arrays), "out");
  // A strided or byte-swapped out=: the job writes a C-order stand-in, copied into it after success.
  py::array stand_in = numpy().attr("empty")(a.attr("shape"), numpy_dtype(dtype));
  arrays.out_stand_in = stand_in;
  arrays.bytes_converted += static_cast<std::uint64_t>(stand_in.nbytes());
  return array_target(memory_array(stand_in, dtype, arrays), "out");
}

}  // namespace tilepool::python
