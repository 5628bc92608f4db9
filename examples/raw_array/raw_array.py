"""multiprocessing.RawArray + np.frombuffer: workers write disjoint tiles, no lock needed.

RawArray('d', n) is n doubles in shared memory with no lock around them. np.frombuffer wraps
it as a numpy array without copying, in the parent and in every forked child. The 256x256
array is cut into 16 tiles of 64x64; worker w fills tiles w, w+4, w+8, ... Each element is
written by exactly one process, so no lock is needed: disjoint writes cannot race.

C++ twin: main.cpp. Run: /usr/bin/python3 examples/raw_array/raw_array.py
"""
import multiprocessing as mp

import numpy as np

ROWS, COLS = 256, 256
TILE = 64
PROCESSES = 4
TILES_PER_ROW = COLS // TILE
TILE_COUNT = (ROWS // TILE) * TILES_PER_ROW


def as_numpy(raw):
    """The RawArray as a ROWS x COLS numpy array: a view of the shared buffer, not a copy."""
    return np.frombuffer(raw, dtype=np.float64).reshape(ROWS, COLS)


def tile_slices(t):
    """The rows and columns of tile t (tiles numbered row by row)."""
    r0, c0 = (t // TILES_PER_ROW) * TILE, (t % TILES_PER_ROW) * TILE
    return slice(r0, r0 + TILE), slice(c0, c0 + TILE)


def fill_tiles(raw, worker):
    a = as_numpy(raw)
    for t in range(worker, TILE_COUNT, PROCESSES):
        rows, cols = tile_slices(t)
        i = np.arange(rows.start, rows.stop)[:, None]
        j = np.arange(cols.start, cols.stop)[None, :]
        a[rows, cols] = i * 1000.0 + j  # writes go straight into shared memory


def main():
    ctx = mp.get_context("fork")  # children inherit the RawArray
    raw = ctx.RawArray("d", ROWS * COLS)  # zero-filled, no lock
    procs = [ctx.Process(target=fill_tiles, args=(raw, w)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a worker failed")

    a = as_numpy(raw)
    i, j = np.indices((ROWS, COLS))
    right = bool(np.array_equal(a, i * 1000.0 + j))
    print(f"the parent sees every tile the workers wrote: {right}")
    print(f"result: ({ROWS}, {COLS}) float64 in {TILE_COUNT} tiles of {TILE}x{TILE} by {PROCESSES} processes, "
          f"no lock: sum={a.sum():.0f} every element right={'yes' if right else 'no'}")
    return 0 if right else 1


if __name__ == "__main__":
    raise SystemExit(main())
