#!/usr/bin/env python3
"""The seed workload done the Python way, for comparison with `tilepool run`.

out = a + b over float64 (365, 16, 16) in 4x4 tiles of the last two axes, on a
multiprocessing.Pool whose initializer attaches shared_memory blocks: the best
stock-Python pattern (no pickled slices). Usage: py_seed_baseline.py A.npy B.npy OUT.npy [WORKERS]
"""
import sys
from multiprocessing import Pool, shared_memory

import numpy as np

_arrays = {}


def _attach(names, shape, dtype):
    for key, name in names.items():
        shm = shared_memory.SharedMemory(name=name)
        _arrays[key] = (shm, np.ndarray(shape, dtype=dtype, buffer=shm.buf))


def _tile(index):
    a, b, out = _arrays["a"][1], _arrays["b"][1], _arrays["out"][1]
    gy, gx = divmod(index, (a.shape[2] + 3) // 4)
    sl = (slice(None), slice(gy * 4, gy * 4 + 4), slice(gx * 4, gx * 4 + 4))
    np.add(a[sl], b[sl], out=out[sl])
    return index


def main():
    a_path, b_path, out_path = sys.argv[1:4]
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    a, b = np.load(a_path), np.load(b_path)
    blocks = {k: shared_memory.SharedMemory(create=True, size=a.nbytes) for k in ("a", "b", "out")}
    try:
        views = {k: np.ndarray(a.shape, dtype=a.dtype, buffer=s.buf) for k, s in blocks.items()}
        views["a"][...] = a
        views["b"][...] = b
        tiles = ((a.shape[1] + 3) // 4) * ((a.shape[2] + 3) // 4)
        names = {k: s.name for k, s in blocks.items()}
        with Pool(workers, initializer=_attach, initargs=(names, a.shape, a.dtype)) as pool:
            pool.map(_tile, range(tiles))
        np.save(out_path, views["out"])
        del views
    finally:
        for s in blocks.values():
            s.close()
            s.unlink()


if __name__ == "__main__":
    main()
