"""The classic pitfalls of sharing numpy arrays between processes, shown safely.

(a) Slices passed to pool.map are pickled copies: a worker that writes into its slice writes
    into its own copy, and the parent never sees it. The bytes cross the pipes both ways.
    Fix: put the array in shared memory, attach it in the pool's initializer, map indices.
(b) A view outliving its segment. np.ndarray(shape, dtype, buffer=shm.buf) keeps a reference
    to the mmap but holds no buffer export, so shm.close() succeeds while the view exists,
    and the next access to the view reads unmapped memory: the interpreter dies with SIGSEGV.
    (Shown up to the brink: we check that the view's mmap is closed and do not touch it.)
    np.frombuffer(shm.buf) does hold an export: close() raises BufferError and the view keeps
    the mapping alive, even after unlink(). Either way: drop the views, then close().
(c) Leaked segments: a process that creates a segment and never unlinks it leaves it in
    /dev/shm, using memory, until someone removes it (Python's resource tracker does so at
    exit, with a warning, unless it is killed too).
(d) A small /dev/shm: SharedMemory(create=True, size=n) only sets the file size; tmpfs
    allocates pages when they are first written. Ask for more than /dev/shm holds and
    creation still succeeds; writing the array then ends in SIGBUS, far from the cause.
    (Shown without writing: no interpreter is harmed.)

C++ twin: main.cpp (what tilepool does about each). Run: /usr/bin/python3 examples/pitfalls/pitfalls.py
"""
import multiprocessing as mp
import os
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.reduction import ForkingPickler

import numpy as np

N = 1 << 18  # 2 MiB of float64
TILES = 16
TILE = N // TILES

# (a) -------------------------------------------------------------------------------------


def double_in_place(chunk):
    chunk *= 2.0  # doubles the worker's copy; the parent's array is untouched


def doubled(chunk):
    return chunk * 2.0


_shared = None


def init(name, n):
    global _shared
    shm = shared_memory.SharedMemory(name=name)
    _shared = (shm, np.ndarray((n,), np.float64, buffer=shm.buf))


def double_tile(t):
    x = _shared[1]
    x[t * TILE:(t + 1) * TILE] *= 2.0


def pickled_bytes(objects):
    """What pool.map sends for these arguments (or results): their pickles' sizes."""
    return sum(len(ForkingPickler.dumps(o)) for o in objects)


def pitfall_a(ctx):
    a = np.arange(N, dtype=np.float64) % 13
    before = a.sum()
    chunks = np.array_split(a, TILES)  # views of a ...
    with ctx.Pool(2) as pool:
        pool.map(double_in_place, chunks)  # ... but each is pickled: the workers get copies
        sent = pickled_bytes(chunks)
        print(f"a: pool.map(double_in_place, slices): parent's sum {before:.0f} -> {a.sum():.0f} "
              f"(writes lost), {sent} bytes pickled to the workers")
        results = pool.map(doubled, chunks)
        back = pickled_bytes(results)
        right = np.array_equal(np.concatenate(results), 2.0 * a)
        print(f"a: returning the results instead: right={right}, {sent + back} bytes through pipes (there and back)")

    shm = shared_memory.SharedMemory(name=f"tpex-{os.getpid()}-a", create=True, size=N * 8)
    try:
        x = np.ndarray((N,), np.float64, buffer=shm.buf)
        x[:] = a
        with ctx.Pool(2, initializer=init, initargs=(shm.name, N)) as pool:
            pool.map(double_tile, range(TILES))  # only tile indices cross the pipes
        total = x.sum()
        right = np.array_equal(x, 2.0 * a)
        print(f"a: shared memory + tile indices: right={right}, 0 array bytes through pipes")
        del x
    finally:
        shm.close()
        shm.unlink()
    return total


# (b) -------------------------------------------------------------------------------------


def pitfall_b():
    shm = shared_memory.SharedMemory(name=f"tpex-{os.getpid()}-b1", create=True, size=8 * 8)
    view = np.ndarray((8,), np.float64, buffer=shm.buf)  # base: the mmap, no export held
    shm.close()  # no error ...
    shm.unlink()
    print(f"b: np.ndarray(buffer=shm.buf), then close(): no error, and the view's mmap is closed: "
          f"{view.base.closed}; reading the view now would kill the interpreter (SIGSEGV), so we do not")
    del view

    shm = shared_memory.SharedMemory(name=f"tpex-{os.getpid()}-b2", create=True, size=8 * 8)
    view = np.frombuffer(shm.buf, dtype=np.float64)  # holds a buffer export on the mapping
    view[-1] = 42.0
    try:
        shm.close()
    except BufferError as e:
        print(f"b: np.frombuffer(shm.buf), then close(): BufferError: {e}")
    shm.unlink()  # the name goes; the mapping stays while the view holds it
    last = view[-1]
    print(f"b: after unlink that view still reads {last:.0f}; safe order: drop the views, then close()")
    del view
    shm.close()
    return last


# (c) -------------------------------------------------------------------------------------


def create_and_forget(name):
    shm = shared_memory.SharedMemory(name=name, create=True, size=4096)
    shm.close()  # closes the mapping; the name stays in /dev/shm (no unlink)


def pitfall_c(ctx):
    name = f"tpex-{os.getpid()}-leak"
    p = ctx.Process(target=create_and_forget, args=(name,))
    p.start()
    p.join()
    leaked = os.path.exists(f"/dev/shm/{name}")
    print(f"c: a child created {name} and exited without unlink(): still in /dev/shm: {leaked}")
    shared_memory.SharedMemory(name=name).unlink()  # someone has to; here, by hand
    left = int(os.path.exists(f"/dev/shm/{name}"))
    print(f"c: removed by hand (SharedMemory(name).unlink()); left: {left}")
    return left


# (d) -------------------------------------------------------------------------------------


def pitfall_d():
    st = os.statvfs("/dev/shm")
    capacity = st.f_blocks * st.f_frsize
    name = f"tpex-{os.getpid()}-huge"
    if capacity == 0:
        print("d: /dev/shm has no size limit here; nothing to show")
    else:
        try:
            shm = shared_memory.SharedMemory(name=name, create=True, size=capacity + 4096)
            print(f"d: SharedMemory(size={shm.size}) on a {capacity}-byte /dev/shm: created without error; "
                  "writing it all would end in SIGBUS (not done)")
            shm.close()
            shm.unlink()
        except OSError as e:
            print(f"d: SharedMemory(size={capacity + 4096}) failed up front: {e}")
    return int(os.path.exists(f"/dev/shm/{name}"))


def main():
    ctx = mp.get_context("fork")
    resource_tracker.ensure_running()  # one tracker for us and our children (see pitfall c)
    a_sum = pitfall_a(ctx)
    b_last = pitfall_b()
    c_left = pitfall_c(ctx)
    d_left = pitfall_d()
    print(f"result: a doubled sum={a_sum:.0f} | b read after unlink={b_last:.0f} | c left={c_left} | d left={d_left}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
