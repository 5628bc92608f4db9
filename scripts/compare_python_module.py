#!/usr/bin/env python3
"""Warm jobs in one Python process: the `tilepool` module against what Python users do instead.

Every peer is set up first (pool started, inputs in shared memory where the peer shares them),
runs a tenth as many warm-up jobs (at least 3), then --runs timed jobs; the table gives the median job time. Each peer's
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
256x256 tiles: 256 tiles). Also the time to start a tilepool pool (share mode) from Python:
in a fresh python3 (as the C++ benchmark starts one in a small program) and in this process
after the peers have run (a bigger process: spawning costs the same, see worker_process.cpp).
With the C++ benchmark built (build/release/bin/tilepool-bench), the Python/C++ ratios of the
warm seed job and of pool start are printed against issue 18's targets (1.5x each).

Usage: PYTHONPATH=build/release/lib/python3/dist-packages /usr/bin/python3 \
         scripts/compare_python_module.py [--runs N] [--workers W] [--only seed,add4096]
"""
import argparse
import concurrent.futures
import multiprocessing as mp
import os
import json
import platform
import statistics
import subprocess
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
    for _ in range(max(3, runs // 10)):  # warm: workers mapped the arrays, caches and pages hot
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


def cpp_bench(workers):
    """C++ medians (seconds) of the warm seed job and of pool start, share mode, from
    tilepool-bench (Google Benchmark): {"seed": s, "start": s}, or {} if it is not built."""
    exe = os.path.join(ROOT, "build", "release", "bin", "tilepool-bench")
    if not os.access(exe, os.X_OK):
        return {}
    names = {"seed": f"BM_Share/add/seed/workers:{workers}/real_time", "start": f"BM_PoolStart/share/workers:{workers}/real_time"}
    pattern = "^(" + "|".join(names.values()) + ")$"
    out = subprocess.run([exe, f"--benchmark_filter={pattern}", "--benchmark_repetitions=5", "--benchmark_format=json"],
                         capture_output=True, text=True, check=True).stdout
    medians = {b["run_name"]: b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
               for b in json.loads(out)["benchmarks"] if b.get("aggregate_name") == "median"}
    return {key: medians[name] for key, name in names.items() if name in medians}


def pool_start_fresh(workers, runs):
    """Median seconds of tp.Pool(workers=W) in a fresh python3 (tilepool imported, nothing else)."""
    code = ("import statistics, sys, time, tilepool as tp\n"
            "ts = []\n"
            f"for _ in range({runs}):\n"
            "    t0 = time.perf_counter(); p = tp.Pool(workers=" + str(workers) + "); ts.append(time.perf_counter() - t0); p.close()\n"
            "print(statistics.median(ts))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout)


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
    seed_out = None
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
        if w == "seed":
            seed_out = base
        print(f"### {w}: {' x '.join(map(str, shape))} float64 add, {tile}x{tile} tiles")
        print()
        print("| peer | warm job | vs tilepool share, out= | right |")
        print("| --- | ---: | ---: | --- |")
        for name, t, right in rows:
            print(f"| {name} | {t * 1e3:.3f} ms | {t / base:.1f}x | {'yes' if right else 'NO'} |")
        print()
    fresh = pool_start_fresh(args.workers, 20)
    grown = pool_start(args.workers, 10)
    rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    print(f"tilepool pool start (share, {args.workers} workers) from Python: {fresh * 1e3:.1f} ms in a fresh python3 (median of 20), "
          f"{grown * 1e3:.1f} ms in this process after the peers ({rss / 2**20:.0f} MiB resident; median of 10)")
    cpp = cpp_bench(args.workers)
    if cpp:
        print()
        print("Python against the C++ API (tilepool-bench, median of 5; issue 18's targets: within 1.5x):")
        if "seed" in cpp and seed_out is not None:
            print(f"- warm seed job, share, out= a segment: {seed_out * 1e3:.3f} ms vs C++ {cpp['seed'] * 1e3:.3f} ms: "
                  f"{seed_out / cpp['seed']:.2f}x")
        if "start" in cpp:
            print(f"- pool start: {fresh * 1e3:.1f} ms vs C++ {cpp['start'] * 1e3:.1f} ms: {fresh / cpp['start']:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
