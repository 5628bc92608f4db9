"""The seed workload from Python, twice: multiprocessing + SharedMemory, then tilepool.

out = a + b over a (365, 16, 16) float64 array, in 16 tiles of 365x4x4, by 2 workers.

1. multiprocessing: the parent puts a, b and out in SharedMemory segments; a spawn
   Pool(initializer=) attaches them by name once per worker; each task gets a tile index and
   writes its tile of out. The pool is started once and kept warm.
2. tilepool: tp.put() puts a and b in named segments, a warm tp.Pool runs the built-in `add`
   kernel over them; workers attach the segments by name (nothing copied) and the result comes
   back as an ndarray that keeps its memory while Python holds it.

Both print the same `result:` line, then the warm job time of each (the median of REPEATS jobs
after one warm-up job) and the pool start time.

Run from the build tree:
  PYTHONPATH=build/release/lib/python3/dist-packages /usr/bin/python3 examples/python/seed.py
or from an install:
  PYTHONPATH=<prefix>/lib/python3/dist-packages /usr/bin/python3 examples/python/seed.py
"""
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing import shared_memory

import numpy as np

import tilepool as tp

SHAPE = (365, 16, 16)
DTYPE = "float64"
TILE = 4
WORKERS = 2
REPEATS = int(os.environ.get("SEED_REPEATS", "200"))
TILES_PER_AXIS = SHAPE[2] // TILE
TILE_COUNT = (SHAPE[1] // TILE) * TILES_PER_AXIS

_segments = []
_a = _b = _out = None


def init(names):
    """multiprocessing's initializer: attach the three segments once per worker."""
    global _a, _b, _out
    _segments[:] = [shared_memory.SharedMemory(name=n) for n in names]
    _a, _b, _out = (np.ndarray(SHAPE, DTYPE, buffer=s.buf) for s in _segments)


def add_tile(t):
    i, j = divmod(t, TILES_PER_AXIS)
    box = (slice(None), slice(i * TILE, (i + 1) * TILE), slice(j * TILE, (j + 1) * TILE))
    np.add(_a[box], _b[box], out=_out[box])


def inputs():
    k = np.arange(int(np.prod(SHAPE))).reshape(SHAPE)
    return (k % 97).astype(DTYPE), ((3 * k) % 89).astype(DTYPE)


def result_line(out, a, b):
    right = bool(np.array_equal(out, a + b))
    return (f"result: add over {TILE_COUNT} tiles of ({SHAPE[0]}, {SHAPE[1]}, {SHAPE[2]}) {DTYPE} "
            f"by {WORKERS} workers: sum={out.sum():.0f} right={'yes' if right else 'no'}")


def median_ms(job):
    job()  # warm-up
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        job()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def with_multiprocessing(a, b):
    nbytes = a.nbytes
    segments = [shared_memory.SharedMemory(create=True, size=nbytes) for _ in range(3)]
    try:
        sa, sb, sout = (np.ndarray(SHAPE, DTYPE, buffer=s.buf) for s in segments)
        sa[...], sb[...] = a, b
        t0 = time.perf_counter()
        with mp.get_context("spawn").Pool(WORKERS, initializer=init, initargs=([s.name for s in segments],)) as pool:
            pool.map(add_tile, range(TILE_COUNT))  # the first job waits for the workers: start
            start_ms = (time.perf_counter() - t0) * 1e3
            job_ms = median_ms(lambda: pool.map(add_tile, range(TILE_COUNT)))
        print(result_line(sout, a, b))
        del sa, sb, sout
        return start_ms, job_ms
    finally:
        for s in segments:
            s.close()
            s.unlink()


def with_tilepool(a, b):
    pid = os.getpid()
    names = [f"seed-{pid}-a", f"seed-{pid}-b", f"seed-{pid}-out"]
    try:
        ta, tb = tp.put(a, names[0]), tp.put(b, names[1])
        dst = tp.create(names[2], SHAPE, DTYPE)  # like multiprocessing's `out` block: made once
        t0 = time.perf_counter()
        with tp.Pool(workers=WORKERS) as pool:
            start_ms = (time.perf_counter() - t0) * 1e3
            out = pool.run("add", ta, tb, tile=(TILE, TILE))  # a new array each job
            assert pool.last_report["bytes_copied"] == 0
            new_ms = median_ms(lambda: pool.run("add", ta, tb, tile=(TILE, TILE)))
            job_ms = median_ms(lambda: pool.run("add", ta, tb, tile=(TILE, TILE), out=dst))
        print(result_line(out, a, b))
        print(f"      (a new result array each job, a fresh job segment the workers map: {new_ms:.3f} ms)")
        return start_ms, job_ms
    finally:
        for n in names:
            tp.delete(n)


def main():
    a, b = inputs()
    mp_start, mp_job = with_multiprocessing(a, b)
    print(f"time: multiprocessing Pool(initializer=) + SharedMemory: pool start {mp_start:.1f} ms, "
          f"warm job {mp_job:.3f} ms (median of {REPEATS})")
    tp_start, tp_job = with_tilepool(a, b)
    print(f"time: tilepool share mode, out= a segment:              pool start {tp_start:.1f} ms, "
          f"warm job {tp_job:.3f} ms (median of {REPEATS})")
    print(f"warm job: tilepool is {mp_job / tp_job:.1f}x multiprocessing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
