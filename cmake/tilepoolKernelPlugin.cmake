# tilepool_add_kernel_plugin(<name> SOURCES <file>... )
#
# Builds a tilepool kernel plugin: a MODULE library (lib<name>.so, for dlopen; nothing links
# it) compiled as C++23 with -fPIC and linked to tilepool::kernels. The plugin shares the
# host's one kernel registry, which lives in libtilepool_kernels.so, instead of carrying a
# copy of it. Symbols are hidden by default (-fvisibility=hidden, inlines too): a plugin
# exports only what it marks visible, its entry point, so helpers of two plugins loaded into
# one process never interpose each other. Undefined symbols are a link error here, not a
# dlopen failure at run time.
#
# Shipped in tilepool's CMake package (find_package(tilepool) makes the function available)
# and used by tilepool's own build. Add sources, include directories or libraries with the
# usual target_* commands on <name>.
#
#   find_package(tilepool 0.2 CONFIG REQUIRED)
#   tilepool_add_kernel_plugin(mykernels SOURCES mykernels.cpp)
#   # tilepool run --plugin ./libmykernels.so --kernel mine ...
function(tilepool_add_kernel_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "tilepool_add_kernel_plugin(${name}): unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_SOURCES)
    message(FATAL_ERROR "tilepool_add_kernel_plugin(${name}): no SOURCES given")
  endif()
  add_library(${name} MODULE ${arg_SOURCES})
  target_link_libraries(${name} PRIVATE tilepool::kernels)
  target_compile_features(${name} PRIVATE cxx_std_23)
  target_link_options(${name} PRIVATE LINKER:--no-undefined)
  set_target_properties(${name} PROPERTIES
    CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
endfunction()
