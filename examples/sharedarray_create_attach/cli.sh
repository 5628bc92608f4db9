#!/bin/sh
# SharedArray's create / attach / list / delete workflow from the shell, with the tilepool CLI
# and numpy: the third twin of sharedarray_create_attach.py and main.cpp.
#
#   SharedArray.create + fill  ->  tilepool put FILE.npy NAME   (one read of the file)
#   SharedArray.list           ->  tilepool ls
#   SharedArray.attach         ->  np.load("/dev/shm/NAME", mmap_mode="r+")   (any process)
#   copy it out                ->  tilepool get NAME FILE.npy
#   SharedArray.delete         ->  tilepool rm NAME
#
# Run: examples/sharedarray_create_attach/cli.sh   (TILEPOOL_BIN: where `tilepool` is;
#      default build/release/bin)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
tilepool=${TILEPOOL_BIN:-$root/build/release/bin}/tilepool
python=${TILEPOOL_PYTHON:-/usr/bin/python3}
name=tpex-$$-cli
tmp=$(mktemp -d)
trap '"$tilepool" rm "$name" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

# An array on disk, as any numpy program would save it.
"$python" -c "import numpy as np; np.save('$tmp/a.npy', (np.arange(10000) % 10).reshape(100, 100).astype(np.float64))"

"$tilepool" put "$tmp/a.npy" "$name"                       # create: the file's array under a name
listed=no
"$tilepool" ls | grep -q "^$name " && listed=yes           # list
"$python" -c "import numpy as np; a = np.load('/dev/shm/$name', mmap_mode='r+'); a += 1; a.flush()"  # attach, add 1
"$tilepool" get "$name" "$tmp/b.npy"                       # a copy on disk
"$tilepool" rm "$name"                                     # delete
deleted=yes
[ -e "/dev/shm/$name" ] && deleted=no

"$python" -c "
import numpy as np
b = np.load('$tmp/b.npy')
print(f'result: created {b.shape} {b.dtype} by name, another process attached it and added 1: '
      f'sum={b.sum():.0f} listed=$listed deleted=$deleted')"
