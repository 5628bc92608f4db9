"""SharedArray's create / attach / list / delete workflow, with numpy alone.

The SharedArray package (pip install SharedArray) keeps numpy arrays in /dev/shm by name:

    a = SharedArray.create("shm://NAME", shape, dtype)  # zero-filled; outlives this process
    b = SharedArray.attach("shm://NAME")                 # any process, by the name alone
    SharedArray.list()                                    # what is there
    SharedArray.delete("NAME")                            # the name goes; attached arrays stay valid

It is not installable here (no PyPI), and it does not need to be: an NPY file in /dev/shm (a
tmpfs: memory, not disk) is a named, self-describing shared array, and numpy alone does the
rest:

    create: np.lib.format.open_memmap("/dev/shm/NAME", mode="w+", dtype=..., shape=...)
    attach: np.load("/dev/shm/NAME", mmap_mode="r+")
    list:   os.listdir("/dev/shm")
    delete: os.unlink("/dev/shm/NAME")

tilepool's segments are exactly such files, so these arrays and tilepool's are the same thing:
`tilepool put/ls/get/rm` is the command-line side of this workflow (see cli.sh).
(Careful with np.save("/dev/shm/NAME", a): it appends ".npy" to a name that lacks it.)

C++ twin: main.cpp. Run: /usr/bin/python3 examples/sharedarray_create_attach/sharedarray_create_attach.py
"""
import os
import subprocess
import sys

import numpy as np

SHM = "/dev/shm"
SHAPE = (100, 100)


def create(name, shape, dtype):
    """SharedArray.create: a new zero-filled array under a name (fails if the name is taken)."""
    path = os.path.join(SHM, name)
    if os.path.exists(path):
        raise FileExistsError(path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def attach(name):
    """SharedArray.attach: the array by name alone; shape and dtype come from the NPY header."""
    return np.load(os.path.join(SHM, name), mmap_mode="r+")


def delete(name):
    """SharedArray.delete: removes the name; arrays already attached stay valid."""
    os.unlink(os.path.join(SHM, name))


def add_one(name):
    """Another program: attaches by name and adds 1 in place."""
    a = attach(name)
    a += 1
    a.flush()
    return 0


def main():
    name = f"tpex-{os.getpid()}-sharedarray"
    try:
        a = create(name, SHAPE, np.float64)
        a[...] = (np.arange(a.size) % 10).reshape(SHAPE)
        a.flush()
        del a  # the creator lets go; the array stays, under its name

        subprocess.run([sys.executable, __file__, "--add-one", name], check=True)

        b = attach(name)
        total = b.sum()
        listed = name in os.listdir(SHM)
        print(f"{name}: {b.dtype} {b.shape}, in /dev/shm: {listed}")
        delete(name)
        deleted = not os.path.exists(os.path.join(SHM, name))
        print(f"after delete: name gone: {deleted}, the attached array still reads: b[0, :3] = {b[0, :3].tolist()}")
        del b
        print(f"result: created {SHAPE} float64 by name, another process attached it and added 1: "
              f"sum={total:.0f} listed={'yes' if listed else 'no'} deleted={'yes' if deleted else 'no'}")
        return 0
    finally:
        if os.path.exists(os.path.join(SHM, name)):
            delete(name)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--add-one":
        raise SystemExit(add_one(sys.argv[2]))
    raise SystemExit(main())
