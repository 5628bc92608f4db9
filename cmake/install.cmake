# Installs tilepool as a CMake package:
#   bin/      tilepool, tilepool-worker, tilepool-mpi (with MPI); libtilepool_runner finds
#             tilepool-worker from its own location (lib/../bin/), whatever program loaded it
#   lib/      libtilepool_{shared,kernels,runner}.so
#   include/  the public headers: every folder's include/tilepool/<folder>/ tree, without
#             detail/ and the headers internal to the libraries (below)
#   lib/cmake/tilepool/  tilepoolConfig.cmake, its version file, the exported targets
#             tilepool::shared, tilepool::kernels, tilepool::runner, and the plugin helper.
# A user's project then needs:
#   find_package(tilepool 0.2 CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE tilepool::runner)
include(CMakePackageConfigHelpers)

set(_tilepool_libraries tilepool_shared tilepool_kernels tilepool_runner)
set(_tilepool_executables tilepool tilepool-worker)
if(TARGET tilepool-mpi)  # built when CMake found MPI (mpi/ installs it)
  list(APPEND _tilepool_executables tilepool-mpi)
endif()
set(TILEPOOL_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/tilepool)

# Installed binaries find the libraries by a path relative to themselves, so a prefix can be
# moved or unpacked anywhere: $ORIGIN/../lib from bin/, $ORIGIN from lib/ (each library
# resolves its own dependencies: RUNPATH is not inherited). The build tree keeps CMake's
# absolute build RPATH, so tests and examples run from build/ without installing.
file(RELATIVE_PATH _bin_to_lib ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
set_target_properties(${_tilepool_executables} PROPERTIES INSTALL_RPATH "$ORIGIN/${_bin_to_lib}")
set_target_properties(${_tilepool_libraries} PROPERTIES INSTALL_RPATH "$ORIGIN")
# The soname carries major.minor, the compatibility unit of 0.x (see the version file below):
# a program or plugin built against 0.2 needs libtilepool_*.so.0.2 and never silently
# loads a 0.3 library.
set_target_properties(${_tilepool_libraries} PROPERTIES
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})

install(TARGETS ${_tilepool_libraries}
  EXPORT tilepoolTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS tilepool tilepool-worker RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Headers the three libraries share with each other but not with users: the control block and
# job descriptor (the workers' and runner's wire format), the futex and system-call wrappers,
# copy mode's protocol and transport, the tile loop, and the report as an nlohmann::json object
# (the project's front ends share it; it would tie users to nlohmann_json). They stay in
# include/ because a sibling library or front end includes them; no installed header includes
# them (tests/package/install_test.sh compiles each installed header alone).
set(_tilepool_internal_headers
  control_block.hpp futex.hpp posix_call.hpp           # shared/
  copy_protocol.hpp copy_transport.hpp tile_loop.hpp   # workers/
  report_json.hpp)                                     # runner/
set(_tilepool_header_excludes)
foreach(_header IN LISTS _tilepool_internal_headers)
  list(APPEND _tilepool_header_excludes PATTERN ${_header} EXCLUDE)
endforeach()
foreach(_folder IN ITEMS shared workers runner)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_folder}/include/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.hpp"
    PATTERN "detail" EXCLUDE
    ${_tilepool_header_excludes})
endforeach()

install(EXPORT tilepoolTargets
  NAMESPACE tilepool::
  FILE tilepoolTargets.cmake
  DESTINATION ${TILEPOOL_INSTALL_CMAKEDIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/tilepoolConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/tilepoolConfig.cmake
  INSTALL_DESTINATION ${TILEPOOL_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the API and the plugin ABI, so a 0.2.x install satisfies
# find_package(tilepool 0.2) and nothing else; SameMajorVersion would let 0.3 satisfy it
# (and 0.2 satisfy a request for 0.1). Switch to SameMajorVersion at 1.0.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/tilepoolConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${CMAKE_CURRENT_BINARY_DIR}/tilepoolConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/tilepoolConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/tilepoolKernelPlugin.cmake
  DESTINATION ${TILEPOOL_INSTALL_CMAKEDIR})
