#!/usr/bin/env python3
"""One tile job done the way a Python user would do it instead of `tilepool run`.

scripts/compare_python.py starts this program once per timed run (process start to exit),
so each peer pays for what it would pay in real use: the interpreter, its imports, loading
the inputs, the pool, the job, writing OUT.npy.

Usage: py_peers.py PEER KERNEL TILE WORKERS OUT.npy IN.npy [IN.npy]
  PEER     numpy | mp_pool | joblib | dask_processes | dask_threads
  KERNEL   add (two inputs) | blur3x3 (one input: the 3x3 mean over the last two axes,
           borders clamped = edge replicated, as tilepool's kernel)
  TILE     the tile edge on the last two axes (leading axes are whole, as in tilepool)

The peers:
  numpy           one process, no tiles: the floor a single core sets.
  mp_pool         multiprocessing.Pool (fork) whose initializer attaches SharedMemory blocks
                  holding the inputs and the output; the tasks are tile indices.
  joblib          joblib.Parallel (loky workers) over the tiles, with joblib's automatic
                  memmapping of input arrays (those over max_nbytes, 1 MB by default, are
                  dumped once to a memmapped file; smaller ones, such as the seed job's
                  0.7 MiB arrays, are pickled with the tasks); the output is a memmapped
                  OUT.npy that the workers write into. loky starts fresh interpreters.
  dask_processes  dask.array: from_array chunked into the tiles, map_blocks (add) or
                  map_overlap (blur3x3, boundary="nearest"), compute(scheduler="processes"):
                  dask's defaults, so workers are spawned and every chunk and result is
                  pickled between processes.
  dask_threads    the same graph, compute(scheduler="threads").
"""
import os
import sys

import numpy as np


def tile_boxes(shape, tile):
    """The tiles of the last two axes, row-major: (r0, r1, c0, c1) each."""
    h, w = shape[-2:]
    return [(r, min(r + tile, h), c, min(c + tile, w)) for r in range(0, h, tile) for c in range(0, w, tile)]


def blur_padded(p, h, w, out):
    """out = the 3x3 mean of p, a block padded by one on the last two axes. Sums the nine
    shifted blocks in tilepool's order (row of the shift, then column), so results match it
    bit for bit."""
    out[...] = p[..., 0:h, 0:w]
    for di in range(3):
        for dj in range(3):
            if di or dj:
                out += p[..., di:di + h, dj:dj + w]
    out /= 9.0


def blur_tile(a, out, box):
    """tilepool's blur3x3 on one tile: reads a one-element halo, clamped at the borders."""
    r0, r1, c0, c1 = box
    h, w = a.shape[-2:]
    rows = np.clip(np.arange(r0 - 1, r1 + 1), 0, h - 1)
    cols = np.clip(np.arange(c0 - 1, c1 + 1), 0, w - 1)
    blur_padded(a[..., rows[:, None], cols], r1 - r0, c1 - c0, out[..., r0:r1, c0:c1])


def blur_whole(a):
    """blur3x3 of a whole array (numpy's edge padding is the clamped border)."""
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)]
    out = np.empty(a.shape, dtype=np.float64)
    blur_padded(np.pad(a, pad, mode="edge"), a.shape[-2], a.shape[-1], out)
    return out


def run_tile(kernel, inputs, out, box):
    r0, r1, c0, c1 = box
    if kernel == "add":
        sl = (Ellipsis, slice(r0, r1), slice(c0, c1))
        np.add(inputs[0][sl], inputs[1][sl], out=out[sl])
    else:
        blur_tile(inputs[0], out, box)


# --- numpy: one process --------------------------------------------------------------------

def peer_numpy(kernel, tile, workers, out_path, in_paths):
    inputs = [np.load(p) for p in in_paths]
    np.save(out_path, inputs[0] + inputs[1] if kernel == "add" else blur_whole(inputs[0]))


# --- multiprocessing.Pool + SharedMemory ------------------------------------------------------

_mp = {}


def _mp_attach(kernel, names, shape, boxes):
    from multiprocessing import shared_memory
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    _mp["views"] = [np.ndarray(shape, np.float64, buffer=b.buf) for b in blocks]
    _mp["blocks"], _mp["kernel"], _mp["boxes"] = blocks, kernel, boxes


def _mp_tile(index):
    views = _mp["views"]
    run_tile(_mp["kernel"], views[:-1], views[-1], _mp["boxes"][index])


def peer_mp_pool(kernel, tile, workers, out_path, in_paths):
    from multiprocessing import Pool, shared_memory
    inputs = [np.load(p) for p in in_paths]
    shape = inputs[0].shape
    # Named after our pid, so that scripts/compare_python.py can tell what a run left behind.
    blocks = [shared_memory.SharedMemory(name=f"pypeer-{os.getpid()}-{i}", create=True, size=inputs[0].nbytes)
              for i in range(len(inputs) + 1)]
    try:
        views = [np.ndarray(shape, np.float64, buffer=b.buf) for b in blocks]
        for view, x in zip(views, inputs):
            view[...] = x
        del inputs
        boxes = tile_boxes(shape, tile)
        names = [b.name for b in blocks]
        with Pool(workers, initializer=_mp_attach, initargs=(kernel, names, shape, boxes)) as pool:
            pool.map(_mp_tile, range(len(boxes)))
        np.save(out_path, views[-1])
        del view, views
    finally:
        for b in blocks:
            b.close()
            b.unlink()


# --- joblib.Parallel with automatic memmapping ------------------------------------------------

def _joblib_tile(kernel, inputs, out, box):
    run_tile(kernel, inputs, out, box)


def peer_joblib(kernel, tile, workers, out_path, in_paths):
    from joblib import Parallel, delayed
    inputs = [np.load(p) for p in in_paths]
    # The output: a memmapped .npy that joblib hands to the workers by file name (joblib's
    # documented way to write results into shared memory), so nothing is sent back.
    out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float64, shape=inputs[0].shape)
    Parallel(n_jobs=workers)(delayed(_joblib_tile)(kernel, inputs, out, box) for box in tile_boxes(out.shape, tile))
    out.flush()
    del out


# --- dask.array -------------------------------------------------------------------------------

def _dask_blur_block(block):
    return blur_whole(block)


def peer_dask(scheduler):
    def peer(kernel, tile, workers, out_path, in_paths):
        import dask.array as da
        inputs = [np.load(p) for p in in_paths]
        chunks = inputs[0].shape[:-2] + (tile, tile)
        arrays = [da.from_array(x, chunks=chunks) for x in inputs]
        if kernel == "add":
            result = da.map_blocks(np.add, arrays[0], arrays[1], dtype=np.float64)
        else:
            nd = arrays[0].ndim
            result = arrays[0].map_overlap(_dask_blur_block, depth={nd - 2: 1, nd - 1: 1}, boundary="nearest",
                                           dtype=np.float64)
        np.save(out_path, result.compute(scheduler=scheduler, num_workers=workers))
    return peer


PEERS = {
    "numpy": peer_numpy,
    "mp_pool": peer_mp_pool,
    "joblib": peer_joblib,
    "dask_processes": peer_dask("processes"),
    "dask_threads": peer_dask("threads"),
}


def main(argv):
    if len(argv) < 6 or argv[0] not in PEERS or argv[1] not in ("add", "blur3x3"):
        sys.exit(__doc__)
    peer, kernel, tile, workers, out_path, in_paths = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5:]
    if len(in_paths) != (2 if kernel == "add" else 1):
        sys.exit(f"py_peers.py: {kernel} takes {2 if kernel == 'add' else 1} input(s)")
    PEERS[peer](kernel, tile, workers, out_path, in_paths)


if __name__ == "__main__":
    main(sys.argv[1:])
