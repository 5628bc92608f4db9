#!/usr/bin/env bash
# The installed package works for a user (ctest label: package).
# Usage: tests/package/install_test.sh BUILD_DIR
#
# Installs BUILD_DIR into a temporary prefix, then checks that:
#   - the prefix holds the executables, libraries, CMake package and public headers, and no
#     header from src/ or detail/ nor the libraries' internal ones (cmake/install.cmake); each
#     installed header compiles alone against the prefix;
#   - the installed executables (tilepool-mpi too, when MPI was found) find their libraries in
#     the prefix (install RPATH), and the installed tilepool runs; a copy of the prefix under
#     another name runs a share-mode job and starts tilepool-mpi with no LD_LIBRARY_PATH or
#     TILEPOOL_WORKER;
#   - consumer/ (find_package(tilepool 0.2 CONFIG REQUIRED), tilepool::runner, and a plugin
#     from tilepool_add_kernel_plugin) configures, builds and runs against the prefix: a
#     built-in, the program's own kernel with the program as its share-mode workers, and the
#     plugin's kernel on the installed tilepool-worker;
#   - find_package(tilepool 9.0) and (0.x: SameMinorVersion) find_package(tilepool 0.1) fail.
# The consumer is built with the build's compiler and flags (a sanitizer build's libraries need
# a sanitizer-built program). Temporary files go away on exit; nothing is left in /dev/shm.
set -euo pipefail

build=$(cd "${1:?usage: install_test.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/tilepool-package-test.XXXXXX")" && pwd -P)
consumer_pid=
cleanup() {
  rm -rf "$tmp"
  if [ -n "$consumer_pid" ]; then
    rm -f /dev/shm/tpconsumer-"$consumer_pid"-* /dev/shm/tilepool-"$consumer_pid"-*
  fi
}
trap cleanup EXIT

fail() {
  echo "install_test: FAIL: $*" >&2
  exit 1
}

cache_value() {  # cache_value NAME: a variable of BUILD_DIR's CMake cache ("" if unset)
  sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1
}

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

# --- what was installed -------------------------------------------------------------------
for f in bin/tilepool bin/tilepool-worker \
         lib/libtilepool_shared.so lib/libtilepool_kernels.so lib/libtilepool_runner.so \
         lib/cmake/tilepool/tilepoolConfig.cmake lib/cmake/tilepool/tilepoolConfigVersion.cmake \
         lib/cmake/tilepool/tilepoolTargets.cmake lib/cmake/tilepool/tilepoolKernelPlugin.cmake \
         include/tilepool/shared/array_segment.hpp include/tilepool/workers/kernel.hpp \
         include/tilepool/runner/pool.hpp; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
detail=$(find "$prefix" -path '*/detail*')
[ -z "$detail" ] || fail "detail/ installed: $detail"
stray=$(find "$prefix/include" -type f ! -path "$prefix/include/tilepool/shared/*" \
          ! -path "$prefix/include/tilepool/workers/*" ! -path "$prefix/include/tilepool/runner/*")
[ -z "$stray" ] || fail "headers outside the public trees installed: $stray"
for h in $(cd "$prefix/include" && find tilepool -name '*.hpp'); do
  folder=$(cut -d/ -f2 <<<"$h")
  [ -f "$here/../../$folder/include/$h" ] || fail "installed header is not a public one: $h"
done
for h in shared/control_block.hpp shared/futex.hpp shared/posix_call.hpp \
         workers/copy_protocol.hpp workers/copy_transport.hpp workers/tile_loop.hpp runner/report_json.hpp; do
  [ ! -e "$prefix/include/tilepool/$h" ] || fail "internal header installed: $h"
done
# Each installed header compiles alone against the prefix: none includes one that was not installed.
cxx=$(cache_value CMAKE_CXX_COMPILER)
export cxx prefix
(cd "$prefix/include" && find tilepool -name '*.hpp') | xargs -P 2 -I{} sh -c \
  'echo "#include <{}>" | "$cxx" -std=c++23 -fsyntax-only -x c++ -I"$prefix/include" -I/usr/include/eigen3 - \
     || { echo "install_test: FAIL: installed header {} does not compile alone" >&2; exit 255; }' \
  || fail "an installed header does not compile alone (see above)"

# --- installed executables use the prefix's libraries -------------------------------------
executables=("$prefix/bin/tilepool" "$prefix/bin/tilepool-worker")
if [ -x "$build/bin/tilepool-mpi" ]; then
  [ -x "$prefix/bin/tilepool-mpi" ] || fail "not installed: bin/tilepool-mpi (the build has it)"
  executables+=("$prefix/bin/tilepool-mpi")
fi
for exe in "${executables[@]}"; do
  runpath=$(readelf -d "$exe" | sed -n 's/.*R\(UN\)\{0,1\}PATH.*\[\(.*\)\]/\2/p')
  [ "$runpath" = '$ORIGIN/../lib' ] || fail "$exe: RUNPATH is '$runpath', expected '\$ORIGIN/../lib'"
  while read -r lib _ path _; do
    case $(realpath -e "$path" 2>/dev/null) in
      "$prefix"/lib/*) ;;
      *) fail "$exe loads $lib from '$path', not from $prefix/lib" ;;
    esac
  done < <(ldd "$exe" | grep libtilepool)
done
kernels=$(env -u TILEPOOL_WORKER "$prefix/bin/tilepool" kernels) || fail "installed tilepool kernels failed"
grep -q '^add' <<<"$kernels" || fail "installed tilepool kernels does not list add: $kernels"

# --- a moved prefix: executables find their libraries and the worker with no environment ----
# Run from a copy of the prefix under another name (a package unpacked elsewhere): tilepool runs
# a share-mode job (the runner library finds ../bin/tilepool-worker from where it is loaded),
# and tilepool-mpi prints its help with no environment at all, and starts (a singleton MPI run
# that refuses a missing --kernel).
moved=$tmp/moved-prefix
cp -a "$prefix" "$moved"
mv "$prefix" "$tmp/prefix-away"  # nothing may still point into the old prefix
(
  cd "$tmp"
  /usr/bin/python3 -c "import numpy as np; np.save('ma.npy', np.arange(64.0).reshape(8, 8)); np.save('mb.npy', np.ones((8, 8)))"
  env -u TILEPOOL_WORKER -u LD_LIBRARY_PATH "$moved/bin/tilepool" run -k add -i ma.npy -i mb.npy -o mout.npy -t 4,4 -w 2 \
    --no-progress >"$tmp/moved.log" 2>&1 || { cat "$tmp/moved.log" >&2; exit 1; }
  /usr/bin/python3 -c "import numpy as np, sys; sys.exit(0 if np.array_equal(np.load('mout.npy'), np.arange(64.0).reshape(8, 8) + 1) else 1)"
) || fail "the moved prefix's tilepool could not run a share-mode job"
if [ -x "$moved/bin/tilepool-mpi" ]; then
  env -i "$moved/bin/tilepool-mpi" run --help >"$tmp/mpi-help.log" 2>&1 && grep -q -- '--rank-per-node' "$tmp/mpi-help.log" \
    || { cat "$tmp/mpi-help.log" >&2; fail "the moved prefix's tilepool-mpi run --help failed under env -i"; }
  # Under the asan preset, LeakSanitizer skips Open MPI's own leaks (the variables do nothing
  # in other builds).
  status=0
  env -u LD_LIBRARY_PATH OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_mca_base_component_disable_dlclose=1 \
    LSAN_OPTIONS="suppressions=$here/../lsan_mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0" \
    "$moved/bin/tilepool-mpi" run >"$tmp/mpi-start.log" 2>&1 || status=$?
  [ "$status" = 2 ] && grep -q -- '--kernel' "$tmp/mpi-start.log" \
    || { cat "$tmp/mpi-start.log" >&2; fail "the moved prefix's tilepool-mpi does not start (exit $status)"; }
fi
rm -rf "$moved"
mv "$tmp/prefix-away" "$prefix"

# --- an out-of-tree consumer ---------------------------------------------------------------
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
build_type=$(cache_value CMAKE_BUILD_TYPE)
configure=(cmake "${generator[@]}" -Wno-dev
  -DCMAKE_PREFIX_PATH="$prefix"
  -DCMAKE_BUILD_TYPE="${build_type:-Release}"
  -DCMAKE_CXX_COMPILER="$(cache_value CMAKE_CXX_COMPILER)"
  -DCMAKE_CXX_FLAGS="$(cache_value CMAKE_CXX_FLAGS)"
  -DCMAKE_EXE_LINKER_FLAGS="$(cache_value CMAKE_EXE_LINKER_FLAGS)"
  -DCMAKE_MODULE_LINKER_FLAGS="$(cache_value CMAKE_MODULE_LINKER_FLAGS)")

"${configure[@]}" -S "$here/consumer" -B "$tmp/consumer" >"$tmp/consumer.log" 2>&1 \
  || { cat "$tmp/consumer.log" >&2; fail "configuring the consumer against the package failed"; }
cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 \
  || { cat "$tmp/consumer.log" >&2; fail "building the consumer against the package failed"; }

plugin=$tmp/consumer/libconsumer_plugin.so
exported=$(nm -DC --defined-only "$plugin" | grep -E 'tilepool|consumer' || true)
[ "$(awk '{print $NF}' <<<"$exported")" = tilepool_plugin_entry ] \
  || fail "the plugin should export only its entry point tilepool_plugin_entry, exports: $exported"

env -u TILEPOOL_WORKER "$tmp/consumer/consumer" "$prefix/bin/tilepool-worker" "$plugin" >"$tmp/run.log" 2>&1 &
consumer_pid=$!
wait "$consumer_pid" || { cat "$tmp/run.log" >&2; fail "the consumer failed"; }
grep -q '^consumer: ok$' "$tmp/run.log" || { cat "$tmp/run.log" >&2; fail "the consumer did not say ok"; }
left=$(ls /dev/shm | grep -E "^(tpconsumer|tilepool)-$consumer_pid-" || true)
[ -z "$left" ] || fail "the consumer left in /dev/shm: $left"

# --- the version file refuses incompatible requests ----------------------------------------
mkdir "$tmp/version"
cat >"$tmp/version/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.25)
project(tilepool_version_probe LANGUAGES CXX)
find_package(tilepool ${REQUEST} CONFIG REQUIRED)
EOF
for request in 9.0 0.1; do
  if "${configure[@]}" -S "$tmp/version" -B "$tmp/version/build-$request" -DREQUEST="$request" \
       >"$tmp/version.log" 2>&1; then
    fail "find_package(tilepool $request) succeeded against version 0.2"
  fi
  grep -q 'considered but not accepted' "$tmp/version.log" && grep -q '0\.2\.0' "$tmp/version.log" \
    || { cat "$tmp/version.log" >&2; fail "find_package(tilepool $request) failed, but not on the version"; }
done

echo "install_test: ok (prefix layout, install RPATH, consumer, plugin, version checks)"
