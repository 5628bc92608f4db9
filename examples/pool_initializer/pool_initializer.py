"""Pool(initializer=init, initargs=(names, shape, dtype)): workers attach shared memory once.

The parent puts the inputs and the output in named shared memory (SharedMemory). Each worker
of the pool runs init() once when it starts: it attaches the segments by name and keeps numpy
views of them in globals. The mapped function then gets a tile index and nothing else: no
array bytes are pickled, only small integers cross the pipes. The workers are started with
"spawn" (they inherit nothing), so attaching by name in the initializer is the only way in.

The seed workload: out = a + b over a (365, 16, 16) float64 array, in 16 tiles of 365x4x4.

C++ twin: main.cpp (tilepool's own path: Pool::start + a JobRequest in share mode).
Run: /usr/bin/python3 examples/pool_initializer/pool_initializer.py
"""
import multiprocessing as mp
import os
from multiprocessing import shared_memory

import numpy as np

SHAPE = (365, 16, 16)
DTYPE = "float64"
TILE = 4  # over the last two axes
WORKERS = 2
TILES_PER_AXIS = SHAPE[2] // TILE
TILE_COUNT = (SHAPE[1] // TILE) * TILES_PER_AXIS

# Set by init() in each worker: the attached segments and numpy views of them.
_segments = []
_a = _b = _out = None


def init(names, shape, dtype):
    """The initializer: runs once per worker, before any task. Attaches the segments by name."""
    global _a, _b, _out
    _segments[:] = [shared_memory.SharedMemory(name=name) for name in names]
    _a, _b, _out = (np.ndarray(shape, dtype, buffer=s.buf) for s in _segments)


def add_tile(t):
    """The mapped function: a tile index in, nothing out. It writes its tile of the output."""
    i, j = divmod(t, TILES_PER_AXIS)
    box = (slice(None), slice(i * TILE, (i + 1) * TILE), slice(j * TILE, (j + 1) * TILE))
    np.add(_a[box], _b[box], out=_out[box])
    return os.getpid()


def main():
    nbytes = int(np.prod(SHAPE)) * np.dtype(DTYPE).itemsize
    roles = ("a", "b", "out")
    segments = [shared_memory.SharedMemory(name=f"tpex-{os.getpid()}-{role}", create=True, size=nbytes)
                for role in roles]
    try:
        a, b, out = (np.ndarray(SHAPE, DTYPE, buffer=s.buf) for s in segments)
        k = np.arange(a.size).reshape(SHAPE)
        a[...] = k % 97
        b[...] = (3 * k) % 89
        out[...] = 0

        names = [s.name for s in segments]
        ctx = mp.get_context("spawn")
        with ctx.Pool(WORKERS, initializer=init, initargs=(names, SHAPE, DTYPE)) as pool:
            pids = pool.map(add_tile, range(TILE_COUNT))
        print(f"initargs: {names}, {SHAPE}, {DTYPE!r} (names only: no array bytes were pickled)")
        print(f"tiles per worker: {sorted(pids.count(p) for p in set(pids))}")
        right = bool(np.array_equal(out, a + b))
        print(f"result: add over {TILE_COUNT} tiles of ({SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}) {DTYPE} "
              f"by {WORKERS} workers: sum={out.sum():.0f} right={'yes' if right else 'no'}")
        del a, b, out, k  # views first: one left after close() would point at unmapped memory
        return 0 if right else 1
    finally:
        for s in segments:
            s.close()
            s.unlink()  # the creator removes the names


if __name__ == "__main__":
    raise SystemExit(main())
