"""SharedMemory + SharedMemoryManager: a manager owns the segments' lifetime.

SharedMemoryManager runs a small server process that tracks the segments made through it
and unlinks every one of them when the with-block exits, even if the code inside raised. The
parent fills an input segment; a separate program (this script run again with --child: a
process that inherits nothing) attaches both segments by name, doubles the input into the
output and detaches, never unlinking: the names belong to the manager. After the with-block,
nothing is left in /dev/shm.

A wart of Python 3.11 that this shows: SharedMemory(name=...) registers the name with the
process's resource tracker even when it only attached. A process started on its own has its
own tracker, which unlinks "its" segments when the process exits: the owner's segment would
vanish under it, with a "leaked shared_memory objects" warning. So the child unregisters what
it attached. (Python 3.13 adds SharedMemory(name, track=False) for this.)

C++ twin: main.cpp (RAII handles: the creator removes, attachers never do).
Run: /usr/bin/python3 examples/shared_memory_manager/shared_memory_manager.py
"""
import os
import subprocess
import sys
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.managers import SharedMemoryManager

import numpy as np

N = 1000


def attach(name):
    """Attaches a segment by name, as a process that does not own it."""
    shm = shared_memory.SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")  # not ours: our tracker must not unlink it
    return shm


def child(in_name, out_name):
    """The other program: attach by name, compute, detach. Never unlinks."""
    src, dst = attach(in_name), attach(out_name)
    x = np.ndarray((N,), np.float64, buffer=src.buf)
    y = np.ndarray((N,), np.float64, buffer=dst.buf)
    y[:] = 2.0 * x
    del x, y  # views first: one left after close() would point at unmapped memory
    src.close()
    dst.close()
    return 0


def main():
    with SharedMemoryManager() as smm:
        src = smm.SharedMemory(size=N * 8)
        dst = smm.SharedMemory(size=N * 8)
        names = [src.name, dst.name]
        print(f"the manager tracks {names}")
        x = np.ndarray((N,), np.float64, buffer=src.buf)
        x[:] = np.arange(N) % 7

        # Another program, given nothing but the names.
        subprocess.run([sys.executable, __file__, "--child", src.name, dst.name], check=True)

        y = np.ndarray((N,), np.float64, buffer=dst.buf)
        total = y.sum()
        right = bool(np.array_equal(y, 2.0 * x))
        del x, y
        src.close()  # our mappings; the manager unlinks the names
        dst.close()
        inside = sum(os.path.exists(f"/dev/shm/{name}") for name in names)
    left = sum(os.path.exists(f"/dev/shm/{name}") for name in names)
    print(f"segments in /dev/shm inside the with-block: {inside}, after it: {left}")
    print(f"result: a child attached by name and doubled {N} float64: sum={total:.0f} right={'yes' if right else 'no'} "
          f"segments left after the owner's scope={left}")
    return 0 if right and left == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        raise SystemExit(child(sys.argv[2], sys.argv[3]))
    raise SystemExit(main())
