#!/usr/bin/env bash
# The README's C++ API example works as printed against an installed package (ctest label:
# package). Usage: tests/package/readme_snippet_test.sh BUILD_DIR
#
# Installs BUILD_DIR into a temporary prefix, takes the first ```cpp block under "## The C++ API"
# in README.md as it is (no line added or changed), builds it out of tree with
# find_package(tilepool) + tilepool::runner, and runs it from a directory of its own with no
# TILEPOOL_WORKER and no LD_LIBRARY_PATH: the pool must find the installed tilepool-worker from
# the installed libtilepool_runner's location, not beside the program. Its output is checked
# against numpy, and it must leave nothing in /dev/shm.
set -euo pipefail

build=$(cd "${1:?usage: readme_snippet_test.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
readme=$here/../../README.md
tmp=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/tilepool-readme-test.XXXXXX")" && pwd -P)
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "readme_snippet_test: FAIL: $*" >&2
  exit 1
}
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1; }

# The snippet's segment names are fixed ("my-a", ...): refuse to run over someone's segments.
for name in my-a my-b my-out; do
  [ ! -e "/dev/shm/$name" ] || fail "/dev/shm/$name exists already; remove it (tilepool rm $name) and run again"
done

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

mkdir "$tmp/src"
awk '/^## The C\+\+ API/ { section = 1; next }
     /^## / { section = 0 }
     section && !done && /^```cpp$/ { inside = 1; next }
     inside && /^```$/ { inside = 0; done = 1; next }
     inside { print }' "$readme" >"$tmp/src/main.cpp"
[ -s "$tmp/src/main.cpp" ] || fail "no \`\`\`cpp block under '## The C++ API' in README.md"
cat >"$tmp/src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(readme_snippet LANGUAGES CXX)
find_package(tilepool 0.2 CONFIG REQUIRED)
add_executable(readme_snippet main.cpp)
target_compile_features(readme_snippet PRIVATE cxx_std_23)
target_link_libraries(readme_snippet PRIVATE tilepool::runner)
CMAKE

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
build_type=$(cache_value CMAKE_BUILD_TYPE)
cmake "${generator[@]}" -Wno-dev -S "$tmp/src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE="${build_type:-Release}" -DCMAKE_CXX_COMPILER="$(cache_value CMAKE_CXX_COMPILER)" \
  -DCMAKE_CXX_FLAGS="$(cache_value CMAKE_CXX_FLAGS)" -DCMAKE_EXE_LINKER_FLAGS="$(cache_value CMAKE_EXE_LINKER_FLAGS)" \
  >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "configuring the README example failed"; }
cmake --build "$tmp/build" >>"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "the README example does not compile"; }

# Its own directory, far from the prefix: bin/tilepool-worker is not beside it.
mkdir "$tmp/run"
cp "$tmp/build/readme_snippet" "$tmp/run/"
cd "$tmp/run"
/usr/bin/python3 -c "
import numpy as np
np.save('a.npy', np.arange(365 * 16 * 16, dtype=np.float64).reshape(365, 16, 16) + 0.5)
np.save('b.npy', np.full((365, 16, 16), 2.0))
"
out=$(env -u TILEPOOL_WORKER -u LD_LIBRARY_PATH ./readme_snippet 2>&1) || fail "the README example failed: $out"
[ "$out" = "16 tiles, out[0, 0, 0] = 2.5" ] || fail "the README example printed '$out', expected '16 tiles, out[0, 0, 0] = 2.5'"
for name in my-a my-b my-out; do
  [ ! -e "/dev/shm/$name" ] || { rm -f "/dev/shm/$name"; fail "the README example left /dev/shm/$name"; }
done
echo "readme_snippet_test: ok (README's C++ example built and run as printed against the installed package)"
