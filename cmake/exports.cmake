# What tilepool's shared libraries export: their API, the names in namespace tilepool (and the
# type information, vtables and guard variables of its types, so exceptions, dynamic_cast and
# function-local statics work across libraries and plugins). Everything else — template
# instantiations of fmt, Boost and the standard library that each library makes for itself,
# — is local: fewer symbols for the dynamic linker to bind when a worker starts, and no
# accidental API. (tilepool::detail stays exported: the libraries call each other's, and the
# unit tests reach the runner's supervisor and job runner.)
#
# tilepool_export_api(TARGET) links TARGET with a GNU ld version script.
function(tilepool_export_api target)
  set(script ${CMAKE_CURRENT_BINARY_DIR}/${target}.exports.map)
  file(WRITE ${script} "{\n  global:\n    extern \"C++\" {\n      tilepool::*;\n      typeinfo?for?tilepool::*;\n      typeinfo?name?for?tilepool::*;\n      vtable?for?tilepool::*;\n      VTT?for?tilepool::*;\n      guard?variable?for?tilepool::*;\n    };\n  local: *;\n};\n")
  target_link_options(${target} PRIVATE "LINKER:--version-script=${script}")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${script})
endfunction()
