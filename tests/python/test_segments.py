# Named segments from Python (the SharedArray.create/attach/delete workflow) and lifetimes:
# the creator removes a name, attaching never does, arrays outlive names and pools, and a
# killed process leaves nothing once gc has run.
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tilepool as tp
from conftest import run_python, unique_name


def test_create_makes_a_zero_filled_segment_numpy_can_load(name):
    a = tp.create(name, (365, 16, 16), np.float64)
    assert a.shape == (365, 16, 16) and a.dtype == np.float64 and not a.any() and a.flags.writeable
    a[3, 4, 5] = 7.5
    seen = np.load(f"/dev/shm/{name}", mmap_mode="r")
    assert seen[3, 4, 5] == 7.5 and seen.shape == a.shape
    assert tp.name_of(a) == name


def test_attach_is_read_only_unless_writable(name):
    tp.create(name, 4, np.int32)[:] = [1, 2, 3, 4]
    r = tp.attach(name)
    assert not r.flags.writeable and r.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        r[0] = 9
    w = tp.attach(name, writable=True)
    w[0] = 9
    assert r[0] == 9


def test_put_copies_an_array_or_an_npy_file_into_a_new_segment(name, tmp_path):
    x = np.arange(12, dtype=np.uint16).reshape(3, 4)
    a = tp.put(x.T, name)  # a transposed (Fortran-order) view: copied C-order
    np.testing.assert_array_equal(tp.attach(name), x.T)
    assert a.flags.c_contiguous
    other = unique_name()
    np.save(tmp_path / "x.npy", x)
    try:
        np.testing.assert_array_equal(tp.put(tmp_path / "x.npy", other), x)
    finally:
        tp.delete(other)


def test_create_and_put_refuse_a_taken_name(name):
    tp.create(name, 3)
    with pytest.raises(tp.Exists) as e:
        tp.create(name, 3)
    assert isinstance(e.value, FileExistsError) and isinstance(e.value, ValueError) and name in str(e.value)
    with pytest.raises(tp.Exists):
        tp.put(np.zeros(3), name)


def test_list_shows_named_arrays_and_delete_removes_them(name):
    tp.create(name, (2, 3), np.int8)
    row = next(r for r in tp.list() if r["name"] == name)
    assert row["kind"] == "array" and row["dtype"] == "int8" and row["shape"] == (2, 3) and row["state"] == "named"
    tp.delete(name)
    assert name not in [r["name"] for r in tp.list()]
    with pytest.raises(tp.BadInput):
        tp.delete(name)


def test_delete_in_a_directory_store_removes_only_segments(tmp_path):
    # Before: tp.delete removed any file of the user's in a file: store (notes.txt went too).
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(tp.BadInput, match=r"'notes.txt' in .* is not a segment"):
        tp.delete("notes.txt", backing=f"file:{tmp_path}")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    tp.put(np.arange(3), "arr", backing=f"file:{tmp_path}")
    tp.delete("arr", backing=f"file:{tmp_path}")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_attaching_never_removes_the_name(name):
    tp.create(name, 3)
    code = f"import tilepool as tp; a = tp.attach({name!r}); del a; import gc; gc.collect()"
    assert run_python(code).returncode == 0
    assert os.path.exists(f"/dev/shm/{name}")


def test_an_array_over_a_deleted_name_stays_valid_and_usable(name):
    a = tp.create(name, (8, 8), np.float64)
    a[:] = 2.0
    b = tp.attach(name)
    tp.delete(name)
    assert not os.path.exists(f"/dev/shm/{name}")
    a[0, 0] = 5.0
    assert b[0, 0] == 5.0 and b.sum() == 2.0 * 63 + 5.0
    with tp.Pool(workers=2) as p:  # no name to attach: the memory goes as any array's
        np.testing.assert_array_equal(p.run("negate", b, tile=(4, 4)), -b)


@pytest.mark.parametrize("mode", tp.MODES)
def test_a_result_outlives_its_pool_and_leaves_nothing_in_shm(mode):
    before = set(os.listdir("/dev/shm"))
    with tp.Pool(workers=2, mode=mode) as p:
        out = p.run("add", np.ones((64, 64)), np.ones((64, 64)), tile=(16, 16))
    assert p.closed
    assert set(os.listdir("/dev/shm")) - before == set()  # the result's name is gone already
    assert (out == 2).all()
    out[:] = 3  # ours to write
    del out


def test_a_closed_pool_refuses_jobs():
    p = tp.Pool(workers=1, mode="threads")
    p.close()
    with pytest.raises(tp.UsageError):
        p.run("negate", np.ones(3), tile=(1,))


def test_a_process_killed_after_run_leaves_nothing_after_gc():
    code = textwrap.dedent("""
        import numpy as np, tilepool as tp, sys, time
        pool = tp.Pool(workers=2)
        a = np.ones((365, 16, 16))
        out = pool.run("add", a, a, tile=(4, 4))          # the result lives on
        print("ran", flush=True)
        time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ran"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    time.sleep(0.2)  # its workers notice (PDEATHSIG, EOF on stdin) and exit
    tp.gc()
    left = [n for n in os.listdir("/dev/shm") if n.startswith(f"tilepool-{child.pid}-")]
    assert left == []


def test_gc_removes_a_dead_owners_job_segments():
    # A job segment named for a process that is gone (a pid that cannot be running).
    dead = f"tilepool-999999999-1-{os.urandom(8).hex()}-out"
    with open(f"/dev/shm/{dead}", "wb") as f:
        f.write(b"x")
    try:
        assert dead in tp.gc()
    finally:
        if os.path.exists(f"/dev/shm/{dead}"):
            os.unlink(f"/dev/shm/{dead}")


# Found by a fresh user's review: the job published DIR/NAME, then reopening it looked in
# /dev/shm and raised BadInput ("does not exist") for a job that had succeeded.
def test_an_output_named_under_a_file_backing_is_returned_from_that_backing(tmp_path):
    name = f"tptest-file-backed-{os.getpid()}"
    with tp.Pool(workers=2, backing=f"file:{tmp_path}") as p:
        out = p.run("negate", np.ones((8, 8)), tile=(4, 4), out=f"shm:{name}")
    assert out.shape == (8, 8) and (out == -1).all()
    assert os.path.exists(tmp_path / name) and not os.path.exists(f"/dev/shm/{name}")
    del out
    tp.delete(name, backing=f"file:{tmp_path}")


# Found by a fresh user's review: a segment the user named like a job's own segment
# (tilepool-PID-START-RANDOM-ROLE) was made, and the next tp.gc() removed it. And a line break
# in a name gave a two-line message.
def test_a_user_name_of_a_job_segments_form_is_refused_and_a_bad_name_is_one_line():
    job_like = f"tilepool-999999999-1-{os.urandom(8).hex()}-out"
    for make in (lambda: tp.create(job_like, (3,)), lambda: tp.put(np.ones(3), job_like)):
        with pytest.raises(tp.UsageError, match="has the form of a job's own segment names"):
            make()
    assert not os.path.exists(f"/dev/shm/{job_like}")
    with tp.Pool(workers=2) as pool:
        with pytest.raises(tp.UsageError, match="has the form of a job's own segment names"):
            pool.run("negate", np.ones(4), tile=(2,), out=f"shm:{job_like}")
    with pytest.raises(tp.UsageError) as e:
        tp.create("two\nlines", (3,))
    assert "\n" not in str(e.value) and "two\\nlines" in str(e.value)
