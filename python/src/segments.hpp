#pragma once
// Named segments from Python: tp.create / attach / put / delete / list / gc, the
// SharedArray.create/attach/list/delete workflow (and `tilepool put/ls/rm/gc`).

#include <pybind11/pybind11.h>

namespace tilepool::python {

/// Adds create, attach, put, delete, list and gc to `m`.
void add_segment_functions(pybind11::module_& m);

}  // namespace tilepool::python
