# Shared fixtures for the tilepool Python tests (pytest, /usr/bin/python3, Debian's numpy).
# ctest (label `python`) runs them with PYTHONPATH at the build tree's package folder; by hand:
#   PYTHONPATH=build/release/lib/python3/dist-packages /usr/bin/python3 -m pytest tests/python
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

import tilepool as tp

SOURCE_DIR = os.environ.get("TILEPOOL_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
# <build>/lib/python3/dist-packages/tilepool -> <build>
BUILD_DIR = os.environ.get("TILEPOOL_BUILD_DIR",
                           os.path.abspath(os.path.join(os.path.dirname(tp.__file__), "..", "..", "..", "..")))
PLUGIN_DIR = os.environ.get("TILEPOOL_TEST_PLUGIN_DIR", os.path.join(BUILD_DIR, "test-plugins"))
SHM = "/dev/shm"


def our_segments():
    """The segments in /dev/shm that this test run could have made: job segments of this process
    (tilepool-<pid>-...) and names the tests make (pytest-...)."""
    prefix = f"tilepool-{os.getpid()}-"
    # A live pool's control block (and its replacement when a bigger job grows it) is the pool's.
    return sorted(n for n in os.listdir(SHM)
                  if (n.startswith(prefix) and not n.endswith("-control")) or n.startswith("pytest-"))


def unique_name(tag="seg"):
    return f"pytest-{tag}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def leaves_shm_as_it_found_it():
    """Every test leaves /dev/shm as it found it (named segments it made included)."""
    before = our_segments()
    yield
    import gc
    gc.collect()
    after = our_segments()
    assert after == before, f"left in /dev/shm: {sorted(set(after) - set(before))}"


@pytest.fixture
def name():
    """A unique segment name, removed after the test if it still exists."""
    n = unique_name()
    yield n
    try:
        tp.delete(n)
    except tp.BadInput:
        pass


def run_python(code, *, timeout=120, env=None, **kwargs):
    """Runs `code` in a fresh /usr/bin/python3 with this test's PYTHONPATH; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env, **kwargs)


def sample(dtype, shape, seed=0):
    """Deterministic test data of `dtype`: small signed values for signed types, so that sums,
    squares and negations stay meaningful; wrap-around is numpy's in both."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind == "u":
        return rng.integers(0, 200, size=shape).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-100, 100, size=shape).astype(dtype)
    return (rng.standard_normal(size=shape) * 10).astype(dtype)
