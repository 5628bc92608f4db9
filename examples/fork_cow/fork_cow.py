"""fork's copy-on-write: children read the parent's big array without copying it.

The parent builds a 32 MiB array in its own private memory and then forks. A forked child
sees the same pages: the kernel shares them until someone writes, and only then copies the
page written (copy-on-write). Two reader children each sum half of the array, measuring
their memory in /proc/self/smaps_rollup before and after: Rss stays flat (the pages were
already mapped at fork) and Private_Dirty, the memory a process has of its own, does not
grow: nothing was copied. A third child writes to half the array: its Private_Dirty grows by
the 16 MiB it wrote, and the parent still sees the original values, since the child wrote to
its private copy. Results go back through a MAP_SHARED anonymous mapping (mmap.mmap(-1, n)),
the one place a forked child's writes are seen by its parent.

C++ twin: main.cpp. Run: /usr/bin/python3 examples/fork_cow/fork_cow.py
"""
import mmap
import multiprocessing as mp

import numpy as np

ELEMENTS = 4 * 1024 * 1024  # 32 MiB of float64
HALF = ELEMENTS // 2
MIB = 1024 * 1024

DATA = None  # the big array, made before the fork: children inherit it, nobody pickles it

# One row per child in the shared results: sum, then Rss, Pss, Private_Dirty before and after.
FIELDS = 7
READERS, WRITER = (0, 1), 2


def memory():
    """(Rss, Pss, Private_Dirty) of this process in bytes, from /proc/self/smaps_rollup."""
    values = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Private_Dirty"):
                values[key] = int(rest.split()[0]) * 1024
    return values["Rss"], values["Pss"], values["Private_Dirty"]


def reader(row, results):
    before = memory()
    total = DATA[row * HALF:(row + 1) * HALF].sum()  # reads the inherited pages: no copy
    results[row] = (total, *before, *memory())


def writer(row, results):
    before = memory()
    half = DATA[:HALF]
    half += 1.0  # writes: the kernel copies every page written, privately for this child
    results[row] = (half.sum(), *before, *memory())


def report(name, row):
    _, rss0, pss0, dirty0, rss1, pss1, dirty1 = row
    print(f"{name}: Rss {rss0 / MIB:5.1f} -> {rss1 / MIB:5.1f} MiB, Pss {pss0 / MIB:5.1f} -> {pss1 / MIB:5.1f} MiB, "
          f"Private_Dirty {dirty0 / MIB:5.1f} -> {dirty1 / MIB:5.1f} MiB (copied {(dirty1 - dirty0) / MIB:.1f} MiB)")
    return dirty1 - dirty0


def main():
    global DATA
    DATA = np.arange(ELEMENTS, dtype=np.float64) % 1000  # private memory of the parent

    ctx = mp.get_context("fork")
    area = mmap.mmap(-1, 3 * FIELDS * 8)  # MAP_SHARED | MAP_ANONYMOUS, made before the fork
    results = np.frombuffer(area, dtype=np.float64).reshape(3, FIELDS)

    procs = [ctx.Process(target=reader, args=(row, results)) for row in READERS]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    w = ctx.Process(target=writer, args=(WRITER, results))
    w.start()
    w.join()
    if any(p.exitcode != 0 for p in procs + [w]):
        raise SystemExit("a child failed")

    read_copied = max(report(f"reader {row}", results[row]) for row in READERS)
    write_copied = report("writer  ", results[WRITER])
    total = results[0, 0] + results[1, 0]
    readers_copied_nothing = read_copied < 2 * MIB  # a few pages of interpreter bookkeeping at most
    writer_copied_its_half = write_copied >= 0.9 * HALF * 8
    private = DATA[0] == 0 and results[WRITER, 0] == DATA[:HALF].sum() + HALF
    print(f"the parent still sees the original values: {bool(private)}")
    print(f"result: 2 children summed {ELEMENTS} inherited float64: sum={total:.0f} "
          f"readers copied nothing={'yes' if readers_copied_nothing else 'no'} "
          f"writer copied its half={'yes' if writer_copied_its_half else 'no'} "
          f"writes stayed private={'yes' if private else 'no'}")
    del results
    area.close()
    return 0 if readers_copied_nothing and writer_copied_its_half and private else 1


if __name__ == "__main__":
    raise SystemExit(main())
