"""Every pattern on one job: what each way of sharing an array costs on the seed workload.

The seed workload is out = a + b over float64 arrays of shape (365, 16, 16), in 16 tiles of
365x4x4 (the last two axes), on 2 worker processes; worker w adds tiles w, w+2, ... Each
pattern of docs/patterns.md does that same job here, in as few lines as the pattern allows, so
that scripts/pattern_costs.py can time each one end to end (process start to exit) and
measure its memory. The folders of examples/ explain the patterns; this file only compares
them.

Usage: seed_patterns.py [PATTERN]    (no PATTERN: all of them, one after the other)
C++ twin: main.cpp (build/release/bin/example-seed_patterns). Both print the same result line.
"""
import mmap
import multiprocessing as mp
import os
import subprocess
import sys
from multiprocessing import shared_memory
from multiprocessing.managers import SharedMemoryManager

import numpy as np

SHAPE = (365, 16, 16)
TILE = 4
TILES_PER_AXIS = SHAPE[2] // TILE
TILE_COUNT = (SHAPE[1] // TILE) * TILES_PER_AXIS
WORKERS = 2
NBYTES = int(np.prod(SHAPE)) * 8


def fill_inputs(a, b):
    k = np.arange(a.size).reshape(SHAPE)
    a[...] = k % 97
    b[...] = (3 * k) % 89


def box(t):
    i, j = divmod(t, TILES_PER_AXIS)
    return (slice(None), slice(i * TILE, (i + 1) * TILE), slice(j * TILE, (j + 1) * TILE))


def add_tiles(worker, a, b, out):
    """What every worker does: its tiles of out = a + b."""
    for t in range(worker, TILE_COUNT, WORKERS):
        np.add(a[box(t)], b[box(t)], out=out[box(t)])


def start_all(ctx, target, args_of):
    procs = [ctx.Process(target=target, args=args_of(w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a worker failed")


# --- the patterns: each returns (a, b, out) as numpy arrays, with out filled ----------------

def one_process():
    """No pattern: numpy in the one process, the floor to compare with."""
    a, b = np.empty(SHAPE), np.empty(SHAPE)
    fill_inputs(a, b)
    return a, b, a + b


def _locked_worker(worker, arrays):
    a, b, out = (np.frombuffer(x.get_obj()).reshape(SHAPE) for x in arrays)
    for t in range(worker, TILE_COUNT, WORKERS):
        with arrays[2].get_lock():
            np.add(a[box(t)], b[box(t)], out=out[box(t)])


def mp_array_lock():
    """mp.Array for a, b and out (each with its lock); forked workers write out under its lock."""
    ctx = mp.get_context("fork")
    arrays = [ctx.Array("d", NBYTES // 8) for _ in range(3)]
    a, b, out = (np.frombuffer(x.get_obj()).reshape(SHAPE) for x in arrays)
    fill_inputs(a, b)
    start_all(ctx, _locked_worker, lambda w: (w, arrays))
    return a, b, out


def _raw_worker(worker, raws):
    add_tiles(worker, *(np.frombuffer(r).reshape(SHAPE) for r in raws))


def raw_array():
    """mp.RawArray for a, b and out, no lock: forked workers write disjoint tiles."""
    ctx = mp.get_context("fork")
    raws = [ctx.RawArray("d", NBYTES // 8) for _ in range(3)]
    a, b, out = (np.frombuffer(r).reshape(SHAPE) for r in raws)
    fill_inputs(a, b)
    start_all(ctx, _raw_worker, lambda w: (w, raws))
    return a, b, out


_attached = []


def _init(names):
    _attached[:] = [shared_memory.SharedMemory(name=n) for n in names]


def _pool_tile(t):
    a, b, out = (np.ndarray(SHAPE, buffer=s.buf) for s in _attached)
    np.add(a[box(t)], b[box(t)], out=out[box(t)])


def pool_initializer():
    """SharedMemory blocks; a spawn Pool whose initializer attaches them; tile indices as tasks."""
    blocks = [shared_memory.SharedMemory(name=f"tpex-{os.getpid()}-{r}", create=True, size=NBYTES)
              for r in ("a", "b", "out")]
    try:
        a, b, out = (np.ndarray(SHAPE, buffer=s.buf) for s in blocks)
        fill_inputs(a, b)
        with mp.get_context("spawn").Pool(WORKERS, initializer=_init, initargs=([s.name for s in blocks],)) as pool:
            pool.map(_pool_tile, range(TILE_COUNT))
        result = a.copy(), b.copy(), out.copy()
        del a, b, out  # views first, then close()
        return result
    finally:
        for s in blocks:
            s.close()
            s.unlink()


def _cow_worker(worker, a, b, out_map):
    add_tiles(worker, a, b, np.frombuffer(out_map).reshape(SHAPE))


def fork_cow():
    """a and b in the parent's private memory, inherited by fork; out in mmap(-1), MAP_SHARED."""
    a, b = np.empty(SHAPE), np.empty(SHAPE)
    fill_inputs(a, b)
    out_map = mmap.mmap(-1, NBYTES)
    start_all(mp.get_context("fork"), _cow_worker, lambda w: (w, a, b, out_map))
    return a, b, np.frombuffer(out_map).reshape(SHAPE).copy()


def _named_worker(worker, names):
    blocks = [shared_memory.SharedMemory(name=n) for n in names]
    views = [np.ndarray(SHAPE, buffer=s.buf) for s in blocks]
    add_tiles(worker, *views)
    del views
    for s in blocks:
        s.close()


def shared_memory_manager():
    """SharedMemoryManager owns the blocks; spawned workers attach them by name."""
    with SharedMemoryManager() as smm:
        blocks = [smm.SharedMemory(size=NBYTES) for _ in range(3)]
        a, b, out = (np.ndarray(SHAPE, buffer=s.buf) for s in blocks)
        fill_inputs(a, b)
        start_all(mp.get_context("spawn"), _named_worker, lambda w: (w, [s.name for s in blocks]))
        result = a.copy(), b.copy(), out.copy()
        del a, b, out
        for s in blocks:
            s.close()
    return result


def sharedarray_create_attach():
    """NPY files in /dev/shm (SharedArray's workflow): created by name, attached by name by
    two other programs, deleted by name."""
    paths = [f"/dev/shm/tpex-{os.getpid()}-{r}" for r in ("a", "b", "out")]
    try:
        a, b, out = (np.lib.format.open_memmap(p, mode="w+", dtype=np.float64, shape=SHAPE) for p in paths)
        fill_inputs(a, b)
        a.flush()
        b.flush()
        workers = [subprocess.Popen([sys.executable, __file__, "--attach", str(w), *paths]) for w in range(WORKERS)]
        if any(w.wait() != 0 for w in workers):
            raise SystemExit("a worker failed")
        return np.array(a), np.array(b), np.array(out)
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)


def _attach_worker(worker, paths):
    add_tiles(int(worker), *(np.load(p, mmap_mode="r+") for p in paths))


def _add(a_tile, b_tile):
    return a_tile + b_tile


def pool_map_slices():
    """The pitfall: pool.map over the tiles' slices pickles each one to a worker and each result back."""
    a, b = np.empty(SHAPE), np.empty(SHAPE)
    fill_inputs(a, b)
    out = np.empty(SHAPE)
    with mp.get_context("fork").Pool(WORKERS) as pool:
        results = pool.starmap(_add, [(a[box(t)], b[box(t)]) for t in range(TILE_COUNT)])
    for t, tile in enumerate(results):
        out[box(t)] = tile
    return a, b, out


PATTERNS = {f.__name__: f for f in (one_process, mp_array_lock, raw_array, pool_initializer, fork_cow,
                                     shared_memory_manager, sharedarray_create_attach, pool_map_slices)}


def main(argv):
    if argv[:1] == ["--attach"]:
        _attach_worker(argv[1], argv[2:])
        return 0
    if argv and argv[0] not in PATTERNS:
        sys.exit(f"usage: seed_patterns.py [{'|'.join(PATTERNS)}]")
    names = argv[:1] or list(PATTERNS)
    sums, right = set(), True
    for name in names:
        a, b, out = PATTERNS[name]()
        ok = bool(np.array_equal(out, a + b))
        print(f"{name}: sum={out.sum():.0f} right={ok}")
        sums.add(f"{out.sum():.0f}")
        right = right and ok
    print(f"result: seed add {SHAPE} float64 in {TILE_COUNT} tiles by {WORKERS} workers, "
          f"{len(names)} pattern(s): sum={'/'.join(sorted(sums))} right={'yes' if right else 'no'}")
    return 0 if right else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
