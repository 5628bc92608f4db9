#include "segments.hpp"

#include <optional>
#include <utility>

#include <fmt/format.h>
#include <pybind11/stl.h>

#include "arrays.hpp"
#include "tilepool/runner/job_names.hpp"
#include "tilepool/shared/array_segment.hpp"
#include "tilepool/runner/store.hpp"
#include "tilepool/shared/interrupt.hpp"

namespace tilepool::python {
namespace {

Backing backing_of(const py::object& backing) {
  return backing.is_none() ? Backing{} : Backing::parse(backing.cast<std::string>());
}

Shape shape_of(const py::object& shape) {
  if (py::isinstance<py::int_>(shape)) return Shape{shape.cast<std::int64_t>()};
  Shape out;
  for (const py::handle extent : shape) out.push_back(extent.cast<std::int64_t>());
  return out;
}

DType dtype_named(const py::object& dtype) {
  const py::object d = py::module_::import("numpy").attr("dtype")(dtype);
  const auto info = parse_typestr(py::str(d.attr("str")).cast<std::string>());
  if (!info) {
    throw Error(Errc::usage, fmt::format("dtype {} is not supported (bool, int8, int16, int32, int64, uint8, uint16, uint32, "
                                         "uint64, float32, float64)",
                                         py::str(d).cast<std::string>()));
  }
  return info->dtype;  // a segment is little-endian whatever byte order was asked for
}

// Runs `work` (a long create or copy under a segment name) with the GIL released, stoppable by
// Ctrl-C: Python's handler runs only when the interpreter is asked, so the library's looks at
// the user's stop (between 64 MiB pieces, and just before a name is given) ask it
// (PyErr_CheckSignals, with the GIL). A KeyboardInterrupt there stops the work, which removes
// what it made, and is what the call raises. Before, the copy ran to its end, the name was
// given, and KeyboardInterrupt came after: the user never got the array, and gc never removes
// a named segment.
template <class Work>
ArraySegment stoppable_by_ctrl_c(Work&& work) {
  std::optional<py::error_already_set> raised;
  auto asked_to_stop = [&raised] {
    if (raised) return true;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) raised.emplace();
    return raised.has_value();
  };
  try {
    py::gil_scoped_release nogil;
    const CancelScope scope(nullptr, asked_to_stop);
    ArraySegment segment = work();
    throw_if_interrupted();  // a signal during the last piece: the name goes with `segment`
    return segment;
  } catch (const Error& e) {
    if (raised) throw std::move(*raised);
    throw;
  }
}

// A named segment's array: the handle gives up the name (the user's, until delete()), the
// ndarray's ArrayMemory keeps the mapping.
py::array named_array(ArraySegment segment, bool read_only) {
  segment.segment().release_name();
  return to_ndarray(JobArray::of(segment), read_only);
}

py::array create(const std::string& name, const py::object& shape, const py::object& dtype, const py::object& backing) {
  const Shape s = shape_of(shape);
  const DType dt = dtype_named(dtype);
  const Backing b = backing_of(backing);
  validate_user_segment_name(name);
  ArraySegment segment = stoppable_by_ctrl_c([&] { return ArraySegment::create(name, dt, s, b, MapOptions{.populate = false}); });
  return named_array(std::move(segment), false);
}

py::array attach(const std::string& name, bool writable, const py::object& backing) {
  const Backing b = backing_of(backing);
  ArraySegment segment = ArraySegment::attach(name, b, MapOptions{.populate = false, .read_only = !writable});
  return to_ndarray(JobArray::of(segment), !writable);
}

py::array put(const py::object& source, const std::string& name, const py::object& backing) {
  const Backing b = backing_of(backing);
  validate_user_segment_name(name);
  if (segment_exists(name, b)) throw Error(Errc::exists, fmt::format("segment '{}' already exists (tp.delete('{}') first)", name, name));
  std::string path;
  if (as_path_text(source, path)) return named_array(stoppable_by_ctrl_c([&] { return put_npy(path, name, b); }), false);
  check_segment_publishable(name, b);  // before the copy, not after it (put_npy checks its own)
  const py::array a = py::module_::import("numpy").attr("asarray")(source);
  const DType dt = dtype_of(a, "put");
  // Filled under a job-owned name ('gc' collects it if we die midway), then published onto
  // `name` in one step: the name holds the whole array or nothing.
  ArraySegment segment = ArraySegment::create(job_segment_name("put"), dt, Shape(a.shape(), a.shape() + a.ndim()), b,
                                              MapOptions{.populate = false});
  const py::array view = to_ndarray(JobArray::of(segment), false);
  py::module_::import("numpy").attr("copyto")(view, a);
  segment.segment().publish(name, false);
  return named_array(std::move(segment), false);
}

void remove(const std::string& name, const py::object& backing) {
  remove_named_segments(std::span(&name, 1), backing_of(backing));
}

// What `tilepool ls` shows (list_segments), as dicts: its columns, with an array's dtype and
// shape and a job segment's owner pid read back out of them.
py::list list(const py::object& backing) {
  const Backing b = backing_of(backing);
  py::list out;
  for (const SegmentInfo& info : list_segments(b)) {
    py::dict row;
    row["name"] = info.name;
    row["bytes"] = static_cast<std::uint64_t>(info.bytes);
    row["kind"] = info.kind;
    row["what"] = info.what;
    row["dtype"] = py::none();
    row["shape"] = py::none();
    if (info.kind == "array") {
      // "float64 (365, 16, 16)"
      const auto space = info.what.find(' ');
      row["dtype"] = info.what.substr(0, space);
      py::tuple shape = py::module_::import("ast").attr("literal_eval")(info.what.substr(space + 1));
      row["shape"] = shape;
    }
    // "named", "live (pid N)", "stale (pid N gone)"
    const auto paren = info.state.find(" (pid ");
    row["state"] = info.state.substr(0, paren);
    row["pid"] = paren == std::string::npos ? py::object(py::none()) : py::object(py::int_(std::stol(info.state.substr(paren + 6))));
    out.append(row);
  }
  return out;
}

std::vector<std::string> gc(const py::object& backing) {
  const Backing b = backing_of(backing);
  py::gil_scoped_release nogil;
  return collect_garbage(b);
}

}  // namespace

void add_segment_functions(py::module_& m) {
  using py::arg;
  m.def("create", &create, arg("name"), arg("shape"), arg("dtype"), py::kw_only(), arg("backing") = py::none());
  m.def("attach", &attach, arg("name"), py::kw_only(), arg("writable") = false, arg("backing") = py::none());
  m.def("put", &put, arg("array"), arg("name"), py::kw_only(), arg("backing") = py::none());
  m.def("delete", &remove, arg("name"), py::kw_only(), arg("backing") = py::none());
  m.def("list", &list, py::kw_only(), arg("backing") = py::none());
  m.def("gc", &gc, py::kw_only(), arg("backing") = py::none());
}

}  // namespace tilepool::python
