#!/usr/bin/env python3
"""Warm jobs in one Python process: the `tilepool` module against what Python users do instead.

Every peer is set up first (pool started, inputs in shared memory where the peer shares them),
runs one warm-up job, then --runs timed jobs; the table gives the median job time. Each peer's
last output is checked against numpy (exact, these are adds). Peers (WORKERS workers each):
  tilepool share      tp.Pool(workers=W), inputs tp.put() into segments, run("add", a, b) -> new array
  tilepool share out= the same, writing into a segment made once (out=dst), like the peers below do
  tilepool threads    tp.Pool(mode="threads"), plain ndarrays used in place
  mp_pool             spawn multiprocessing.Pool(initializer=) attaching SharedMemory blocks holding
                      a, b and out; pool.map over tile indices (scripts/py_peers.py's tile code)
  joblib              one joblib.Parallel(n_jobs=W) kept open (loky workers stay warm), inputs and a
                      memmapped out as scripts/py_peers.py passes them (auto-memmapping over 1 MB)
  dask threads        da.from_array(chunks=tile) + map_blocks(np.add), compute(scheduler="threads")
  dask processes      the same graph, compute(scheduler="processes", pool=<a warm ProcessPoolExecutor>)
Workloads: seed (365x16x16 float64 add, 4x4 tiles: 16 tiles), add4096 (4096x4096 float64 add,
256x256 tiles: 256 tiles). Also the time to start a tilepool pool (share mode) from Python.

Usage: PYTHONPATH=build/release/lib/python3/dist-packages /usr/bin/python3 \
         scripts/compare_python_module.py [--runs N] [--workers W] [--only seed,add4096]
"""
import argparse
import concurrent.futures
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from multiprocessing import shared_memory

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import py_peers  # noqa: E402  (tile boxes and the tile code every Python peer runs)

import tilepool as tp  # noqa: E402

WORKLOADS = {"seed": ((365, 16, 16), 4), "add4096": ((4096, 4096), 256)}


def timed(job, runs):
    job()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- the peers: each is set up, then returns (job, result_getter, teardown) -------------------

def peer_tilepool(shape, tile, workers, a, b, mode="share", out_segment=False):
    pid = os.getpid()
    names = []
    if mode == "share":
        names = [f"cmpmod-{pid}-a", f"cmpmod-{pid}-b"]
        ta, tb = tp.put(a, names[0]), tp.put(b, names[1])
    else:
        ta, tb = a, b
    dst = None
    if out_segment:
        names.append(f"cmpmod-{pid}-out")
        dst = tp.create(names[-1], shape, np.float64)
    pool = tp.Pool(workers=workers, mode=mode)
    box = {}

    def job():
        box["out"] = pool.run("add", ta, tb, tile=(tile,) * 2, out=dst)

    def teardown():
        pool.close()
        for n in names:
            tp.delete(n)

    return job, lambda: box["out"], teardown


_mp = {}


def _mp_attach(names, shape, boxes):
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    _mp["views"] = [np.ndarray(shape, np.float64, buffer=blk.buf) for blk in blocks]
    _mp["blocks"], _mp["boxes"] = blocks, boxes


def _mp_tile(index):
    v = _mp["views"]
    py_peers.run_tile("add", v[:2], v[2], _mp["boxes"][index])


def peer_mp_pool(shape, tile, workers, a, b):
    blocks = [shared_memory.SharedMemory(create=True, size=a.nbytes) for _ in range(3)]
    views = [np.ndarray(shape, np.float64, buffer=blk.buf) for blk in blocks]
    views[0][...], views[1][...] = a, b
    boxes = py_peers.tile_boxes(shape, tile)
    pool = mp.get_context("spawn").Pool(workers, initializer=_mp_attach, initargs=([blk.name for blk in blocks], shape, boxes))

    def job():
        pool.map(_mp_tile, range(len(boxes)))

    def teardown():
        pool.close()
        pool.join()
        views.clear()
        for blk in blocks:
            blk.close()
            blk.unlink()

    return job, lambda: views[2].copy(), teardown


def _joblib_tile(inputs, out, box):
    py_peers.run_tile("add", inputs, out, box)


def peer_joblib(shape, tile, workers, a, b):
    from joblib import Parallel, delayed
    folder = tempfile.mkdtemp(prefix="cmpmod-joblib-")
    out = np.lib.format.open_memmap(os.path.join(folder, "out.npy"), mode="w+", dtype=np.float64, shape=shape)
    boxes = py_peers.tile_boxes(shape, tile)
    parallel = Parallel(n_jobs=workers)
    parallel.__enter__()  # keeps the loky workers (and their memmapped inputs) between calls

    def job():
        parallel(delayed(_joblib_tile)([a, b], out, box) for box in boxes)

    def teardown():
        parallel.__exit__(None, None, None)
        os.unlink(os.path.join(folder, "out.npy"))
        os.rmdir(folder)

    return job, lambda: np.array(out), teardown


def peer_dask(scheduler):
    def peer(shape, tile, workers, a, b):
        import dask.array as da
        chunks = shape[:-2] + (tile, tile)
        result = da.map_blocks(np.add, da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks), dtype=np.float64)
        executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if scheduler == "processes" else None
        box = {}

        def job():
            if executor is None:
                box["out"] = result.compute(scheduler="threads", num_workers=workers)
            else:
                box["out"] = result.compute(scheduler="processes", pool=executor)

        def teardown():
            if executor is not None:
                executor.shutdown()

        return job, lambda: box["out"], teardown
    return peer


PEERS = {
    "tilepool share": lambda *x: peer_tilepool(*x),
    "tilepool share, out= a segment": lambda *x: peer_tilepool(*x, out_segment=True),
    "tilepool threads": lambda *x: peer_tilepool(*x, mode="threads"),
    "multiprocessing.Pool(initializer=) + SharedMemory": peer_mp_pool,
    "joblib (warm loky)": peer_joblib,
    "dask threads": peer_dask("threads"),
    "dask processes (warm pool)": peer_dask("processes"),
}


def pool_start(workers, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = tp.Pool(workers=workers)
        times.append(time.perf_counter() - t0)
        p.close()
    return statistics.median(times)


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    args = ap.parse_args(argv)
    import dask
    import joblib
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
          f"joblib {joblib.__version__}, dask {dask.__version__}; {args.workers} workers, median of {args.runs} warm jobs "
          f"(seed; a fifth as many at 4096²); load average {os.getloadavg()[0]:.1f} at start")
    print(f"command: PYTHONPATH=... /usr/bin/python3 scripts/compare_python_module.py {' '.join(argv)}".rstrip())
    print()
    ok = True
    for w in args.only.split(","):
        shape, tile = WORKLOADS[w]
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal(shape), rng.standard_normal(shape)
        expected = a + b
        rows = []
        for name, make in PEERS.items():
            runs = args.runs if w == "seed" else max(5, args.runs // 5)
            job, result, teardown = make(shape, tile, args.workers, a, b)
            try:
                t = timed(job, runs)
                right = np.array_equal(result(), expected)
            finally:
                teardown()
            ok &= right
            rows.append((name, t, right))
        base = rows[1][1]  # tilepool share writing into a segment: what the peers do with their out
        print(f"### {w}: {' x '.join(map(str, shape))} float64 add, {tile}x{tile} tiles")
        print()
        print("| peer | warm job | vs tilepool share, out= | right |")
        print("| --- | ---: | ---: | --- |")
        for name, t, right in rows:
            print(f"| {name} | {t * 1e3:.3f} ms | {t / base:.1f}x | {'yes' if right else 'NO'} |")
        print()
    print(f"tilepool pool start (share, {args.workers} workers) from Python: {pool_start(args.workers, 10) * 1e3:.1f} ms (median of 10)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
