# 10,000 jobs on one warm pool leak no descriptors, memory or segments.
import os

import numpy as np

import tilepool as tp
from conftest import our_segments

JOBS = 10_000


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ten_thousand_seed_jobs_leak_no_descriptors_memory_or_segments():
    a = tp.put(np.random.default_rng(1).standard_normal((365, 16, 16)), "pytest-leak-a")
    b = tp.put(np.random.default_rng(2).standard_normal((365, 16, 16)), "pytest-leak-b")
    plain = np.ones((365, 16, 16))
    dst = tp.create("pytest-leak-out", (365, 16, 16), np.float64)
    try:
        with tp.Pool(workers=2) as pool:
            for _ in range(200):  # warm: allocator pools, caches
                pool.run("add", a, b, tile=(4, 4))
            fds, rss, shm = open_fds(), rss_bytes(), our_segments()
            for i in range(JOBS):
                # Mostly the seed job on segments into a segment (under 1 ms warm); every 10th a
                # plain array (copied into a job segment) into a new result array (another job
                # segment), every 10th a reduction: every path that makes and drops memory runs.
                if i % 10 == 0:
                    out = pool.run("add", plain, b, tile=(4, 4))
                elif i % 10 == 5:
                    out = pool.run("sum", a, tile=(4, 4))
                else:
                    out = pool.run("add", a, b, tile=(4, 4), out=dst)
                del out
            assert open_fds() == fds
            grown = rss_bytes() - rss
            assert grown < 16 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over {JOBS} jobs"
            assert our_segments() == shm
    finally:
        del a, b, dst
        for n in ("pytest-leak-a", "pytest-leak-b", "pytest-leak-out"):
            tp.delete(n)
