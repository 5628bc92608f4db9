#!/usr/bin/env bash
# The README's "Write your own kernel" and the kernel examples, run the way a user runs them
# (ctest label: package). Usage: tests/package/examples_test.sh BUILD_DIR
#
#   - Runs every command of the README section "Write your own kernel", in order, in a bash
#     whose HOME is a temporary folder: its `cmake --install build/release` installs BUILD_DIR;
#     each code block marked <!-- file: NAME --> is written to NAME where the section is then,
#     and must equal examples/kernel_ndvi/NAME. The section builds the NDVI plugin against
#     the installed package, runs it in all four modes and compares with numpy.
#   - Copies examples/kernel_daily_stats/ elsewhere, builds it against the same install and
#     runs it in all four modes: outputs bitwise equal to each other, and to numpy's
#     mean/std over the leading axis within 1e-12.
#   - Nothing of these runs is left in /dev/shm; the temporary folder goes away on exit.
set -euo pipefail

build=$(cd "${1:?usage: examples_test.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
tmp=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/tilepool-examples-test.XXXXXX")" && pwd -P)
shm_before=$tmp/shm-before
ls /dev/shm >"$shm_before"
trap 'rm -rf "$tmp"' EXIT

fail() {
  echo "examples_test: FAIL: $*" >&2
  exit 1
}

# --- the README section, as a script --------------------------------------------------------
/usr/bin/python3 - "$source_dir/README.md" "$tmp/readme.sh" "$build" <<'PY'
import re, shlex, sys
readme, script, build = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(readme).read()
start = text.index("\n## Write your own kernel\n")
end = text.index("\n## ", start + 1)
section = text[start:end]
out = ["set -euo pipefail"]
blocks = list(re.finditer(r"(<!-- file: (\S+) -->\n)?```(\w+)\n(.*?)```", section, re.S))
if not blocks:
    sys.exit("no code blocks in the section")
for m in blocks:
    name, lang, body = m.group(2), m.group(3), m.group(4)
    if name:
        out.append(f"cat >{shlex.quote(name)} <<'TILEPOOL_README_FILE'\n{body}TILEPOOL_README_FILE")
        out.append(f"cmp {shlex.quote(name)} \"$TILEPOOL_EXAMPLE_DIR\"/{shlex.quote(name)} "
                   f"|| {{ echo 'README block {name} differs from examples/kernel_ndvi/{name}' >&2; exit 1; }}")
    elif lang == "sh":
        # The install step installs the build under test.
        out.append(body.replace("cmake --install build/release", f"cmake --install {shlex.quote(build)}"))
open(script, "w").write("\n".join(out) + "\n")
PY
mkdir "$tmp/home"
(cd "$source_dir" && HOME=$tmp/home TILEPOOL_EXAMPLE_DIR=$source_dir/examples/kernel_ndvi \
   bash "$tmp/readme.sh") >"$tmp/readme.log" 2>&1 \
  || { cat "$tmp/readme.log" >&2; fail "a command of the README section failed (script: see above)"; }
grep -q '^ndvi: share, fork, copy and threads all equal numpy$' "$tmp/readme.log" \
  || { cat "$tmp/readme.log" >&2; fail "the README's numpy check did not run"; }
grep -q '^copy .*copied' "$tmp/readme.log" || { cat "$tmp/readme.log" >&2; fail "the README's benchmark printed nothing"; }
prefix=$tmp/home/opt/tilepool
T=$prefix/bin/tilepool
[ -x "$T" ] || fail "the README's install step did not install $T"

# --- daily_stats, copied elsewhere and built against the install -------------------------------
cp -r "$source_dir/examples/kernel_daily_stats" "$tmp/daily_stats"
cd "$tmp/daily_stats"
cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/daily.log" 2>&1 \
  && cmake --build build >>"$tmp/daily.log" 2>&1 || { cat "$tmp/daily.log" >&2; fail "building kernel_daily_stats failed"; }
/usr/bin/python3 -c "
import numpy as np
rng = np.random.default_rng(1)
np.save('grid.npy', 15 + 10 * rng.standard_normal((365, 60, 50)))       # (days, rows, cols)
np.save('grid32.npy', rng.random((30, 7, 9), dtype=np.float32))"
for mode in share fork copy threads; do
  "$T" run --no-progress --plugin build/libdaily_stats.so -k daily_stats -i grid.npy -o stats-$mode.npy -t 16,16 \
    --mode "$mode" --json >json-$mode.txt || fail "daily_stats in $mode mode failed"
  "$T" run --no-progress --plugin build/libdaily_stats.so -k daily_stats -i grid32.npy -o stats32-$mode.npy -t 4,4 \
    --mode "$mode" -w 2 || fail "daily_stats (float32) in $mode mode failed"
done
/usr/bin/python3 - <<'PY' || fail "daily_stats does not match numpy"
import json
import numpy as np
for name in ["grid", "grid32"]:
    a = np.load(f"{name}.npy")
    ref = np.stack([a.mean(axis=0, dtype=np.float64), a.std(axis=0, dtype=np.float64)])
    outs = {m: np.load(f"stats{'32' if name == 'grid32' else ''}-{m}.npy") for m in ["share", "fork", "copy", "threads"]}
    for m, o in outs.items():
        assert o.shape == ref.shape and o.dtype == np.float64, (name, m, o.shape, o.dtype)
        assert np.array_equal(o, outs["share"]), (name, m, "differs from share")
        assert np.allclose(o, ref, rtol=1e-12, atol=1e-12), (name, m, np.abs(o - ref).max())
copy = json.load(open("json-copy.txt"))
# copy mode ships each tile's pixels for every day, once, and returns the output.
assert copy["bytes_copied"] == (365 * 60 * 50 + 2 * 60 * 50) * 8, copy["bytes_copied"]
print("daily_stats: four modes bitwise equal, numpy's mean/std within 1e-12")
PY
# A 2-D input is refused before anything runs: exit 2, one line naming the kernel.
/usr/bin/python3 -c "import numpy as np; np.save('flat.npy', np.zeros((4, 4)))"
status=0
"$T" run --no-progress --plugin build/libdaily_stats.so -k daily_stats -i flat.npy -o x.npy -t 4,4 2>"$tmp/err" || status=$?
[ "$status" = 2 ] && grep -q '^tilepool: error: daily_stats: input has shape (4, 4); expected (days, rows, cols)' "$tmp/err" \
  || { cat "$tmp/err" >&2; fail "a 2-D input to daily_stats: exit $status"; }
cd "$tmp"

# --- nothing left behind ------------------------------------------------------------------------
left=$(ls /dev/shm | grep -vxF -f "$shm_before" | grep '^tilepool-' || true)
for name in $left; do
  pid=$(cut -d- -f2 <<<"$name")
  kill -0 "$pid" 2>/dev/null || fail "left in /dev/shm: $name"
done
echo "examples_test: ok (README section, ndvi and daily_stats in every mode against numpy)"
