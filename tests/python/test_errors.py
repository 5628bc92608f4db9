# Errors are exceptions of tilepool's types, with the CLI's message text, and a failed job
# leaves nothing behind.
import os
import signal
import time

import numpy as np
import pytest

import tilepool as tp
from conftest import PLUGIN_DIR


@pytest.fixture(scope="module")
def pool():
    with tp.Pool(workers=2) as p:
        yield p


def test_the_types_form_one_hierarchy_under_python_builtins():
    assert issubclass(tp.UsageError, tp.TilepoolError) and issubclass(tp.UsageError, ValueError)
    assert issubclass(tp.BadInput, tp.TilepoolError) and issubclass(tp.BadInput, ValueError)
    assert issubclass(tp.Exists, tp.BadInput) and issubclass(tp.Exists, FileExistsError)
    assert issubclass(tp.NoSpace, tp.TilepoolError) and issubclass(tp.NoSpace, OSError)
    assert issubclass(tp.OSFailure, tp.TilepoolError) and issubclass(tp.OSFailure, OSError)
    assert issubclass(tp.JobFailed, tp.TilepoolError) and issubclass(tp.JobFailed, RuntimeError)


def test_an_unknown_kernel_is_a_usage_error(pool):
    with pytest.raises(tp.UsageError, match="nope"):
        pool.run("nope", np.ones(3), tile=(1,))


def test_a_zero_tile_is_a_usage_error_naming_the_keyword(pool):
    with pytest.raises(tp.UsageError) as e:
        pool.run("negate", np.ones((4, 4)), tile=(0, 2))
    assert str(e.value).startswith("tile")


def test_mismatched_dtypes_and_shapes_are_bad_input(pool):
    with pytest.raises(tp.BadInput):
        pool.run("add", np.ones(4), np.ones(4, np.int32), tile=(2,))
    with pytest.raises(tp.BadInput):
        pool.run("add", np.ones(4), np.ones(5), tile=(2,))
    with pytest.raises(tp.BadInput):
        pool.run("matmul", np.ones((3, 4)), np.ones((5, 2)), tile=(1, 1))


def test_unsupported_dtypes_are_bad_input(pool):
    with pytest.raises(tp.BadInput, match="complex128"):
        pool.run("negate", np.ones(3, np.complex128), tile=(1,))
    with pytest.raises(tp.UsageError):
        tp.create("pytest-never", 3, np.complex64)


def test_missing_files_and_segments_are_bad_input(pool, tmp_path):
    with pytest.raises(tp.BadInput, match="nope.npy"):
        pool.run("negate", str(tmp_path / "nope.npy"), tile=(1,))
    with pytest.raises(tp.BadInput, match="pytest-nope"):
        pool.run("negate", "shm:pytest-nope", tile=(1,))
    with pytest.raises(tp.BadInput):
        tp.attach("pytest-nope")


def test_bad_parameters_are_usage_errors(pool):
    with pytest.raises(tp.UsageError, match="value"):
        pool.run("add_scalar", np.ones(3, np.int8), tile=(1,), params={"value": 2.5})
    with pytest.raises(tp.UsageError):
        pool.run("add_scalar", np.ones(3), tile=(1,), params={"value": "five"})


@pytest.mark.parametrize("bad", [dict(workers=2**70), dict(workers=5000)])
def test_out_of_range_pool_numbers_are_usage_errors_in_one_line(bad):
    with pytest.raises(tp.UsageError) as e:
        tp.Pool(**bad)
    assert str(e.value) == f"workers={bad['workers']!r}: expected an int from 1 to 4,096, or None (one per core)"


def test_out_of_range_tiles_and_non_str_param_keys_are_usage_errors_in_one_line(pool):
    with pytest.raises(tp.UsageError) as e:
        pool.run("negate", np.ones(4), tile=(2**63,))
    assert str(e.value) == "tile=(9223372036854775808,): expected a tuple of positive integers below 2**63, like (4, 4)"
    with pytest.raises(tp.UsageError) as e:
        pool.run("add_scalar", np.ones(4), tile=(2,), params={1: 1})
    assert str(e.value) == "params: the key 1 is not a str (expected parameter names, like {\"value\": 5})"


def test_bad_pool_settings_are_usage_errors():
    with pytest.raises(tp.UsageError) as e:
        tp.Pool(mode="bogus")
    assert str(e.value) == "mode='bogus': not a mode (expected share, fork, copy or threads)"
    for wrong in (None, 3):  # before: pybind11's "incompatible constructor arguments", a TypeError of many lines
        with pytest.raises(tp.UsageError, match=f"mode={wrong!r}: not a mode"):
            tp.run("negate", np.ones(4), tile=(2,), mode=wrong)
    with pytest.raises(tp.UsageError):
        tp.Pool(workers=0)
    with pytest.raises(tp.UsageError):
        tp.Pool(backing="nowhere")
    with pytest.raises(tp.UsageError):
        tp.Pool(progress=3).run("negate", np.ones(2), tile=(1,), progress=3)


def test_a_read_only_or_mismatched_out_is_refused(pool):
    ro = np.zeros(4)
    ro.setflags(write=False)
    with pytest.raises(tp.BadInput, match="read-only"):
        pool.run("negate", np.ones(4), tile=(2,), out=ro)
    with pytest.raises(tp.BadInput) as e:
        pool.run("negate", np.ones(4), tile=(2,), out=np.zeros(5))
    assert str(e.value) == "out: is float64 (5,); the kernel's output is float64 (4,)"


def test_an_existing_output_names_the_remedy(pool, tmp_path):
    np.save(tmp_path / "out.npy", np.zeros(4))
    with pytest.raises(tp.Exists) as e:
        pool.run("negate", np.ones(4), tile=(2,), out=str(tmp_path / "out.npy"))
    assert str(e.value).endswith("(pass force=True to overwrite)"), str(e.value)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.zeros(4))  # untouched
    pool.run("negate", np.ones(4), tile=(2,), out=str(tmp_path / "out.npy"), force=True)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), -np.ones(4))
    with pytest.raises(tp.UsageError):
        pool.run("negate", np.ones(4), tile=(2,), out=[0, 0, 0, 0])


def test_a_full_store_is_no_space_before_any_work():
    with pytest.raises(tp.NoSpace) as e:
        tp.create("pytest-huge", (1 << 50,), np.uint8)
    assert isinstance(e.value, OSError) and "backing='file:DIR'" in str(e.value)
    assert not os.path.exists("/dev/shm/pytest-huge")


@pytest.mark.skipif(not os.path.exists(os.path.join(PLUGIN_DIR, "libtptest_kernels.so")),
                    reason="tests/plugins not built (cmake --build ... --target tptest_kernels)")
@pytest.mark.parametrize("mode", tp.MODES)
def test_a_kernel_that_throws_fails_the_job_naming_the_tile_and_the_pool_stays_usable(mode):
    with tp.Pool(workers=2, mode=mode, plugins=[os.path.join(PLUGIN_DIR, "libtptest_kernels.so")]) as p:
        with pytest.raises(tp.JobFailed) as e:
            p.run("tp_throw", np.ones((8, 8)), tile=(4, 4), params={"row": 1, "col": 1})
        assert isinstance(e.value, RuntimeError) and "tp_throw" in str(e.value)
        np.testing.assert_array_equal(p.run("negate", np.ones((8, 8)), tile=(4, 4)), -np.ones((8, 8)))


@pytest.mark.parametrize("bad", [dict(tile=(2.5, 2)), dict(tile="ab"), dict(tile=(True, 2)),
                                 dict(tile=(4, 4), params=[("value", 1)]), dict(tile=(4, 4), params={1: 2})])
def test_a_tile_or_params_of_the_wrong_type_is_a_usage_error_in_one_line(pool, bad):
    # Not pybind11's "Unable to cast Python instance" RuntimeError, nor a TypeError dumping the array.
    with pytest.raises(tp.UsageError) as e:
        pool.run("add_scalar", np.ones((8, 8)), **bad)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(("tile=", "params:"))


def test_a_worker_killed_between_jobs_is_replaced_without_failing_the_next_job():
    # Before: the replacement attached the finished job's input copy, already removed, and the
    # next job failed with "segment ... was removed since the job started".
    a = np.arange(64.0).reshape(8, 8)
    with tp.Pool(workers=2) as p:
        p.run("negate", a, tile=(4, 4))
        os.kill(p.worker_pids[0], signal.SIGKILL)
        time.sleep(0.2)
        for _ in range(3):
            np.testing.assert_array_equal(p.run("negate", a, tile=(4, 4)), -a)


# Found by a fresh user's review: a child forked after a Pool was made (os.fork, or
# multiprocessing's fork start method) that used the pool, or just exited, waited for good for
# the pool's thread, which is not in the child.
@pytest.mark.parametrize("mode", ["share", "copy", "threads"])
def test_a_pool_inherited_by_fork_is_refused_in_the_child_and_the_child_exits(mode):
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent(f"""
        import os, sys, numpy as np, tilepool as tp
        pool = tp.Pool(workers=2, mode={mode!r})
        pid = os.fork()
        if pid == 0:
            try:
                pool.run("add", np.ones(4), np.ones(4), tile=(2,))
                print("ran", flush=True)
            except tp.UsageError as e:
                print("refused", "pools do not cross fork" in str(e), pool.closed, flush=True)
            sys.exit(0)   # the pool's finalizer runs in the child: it must not wait
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        print("parent", pool.run("add", np.ones(4), np.ones(4), tile=(2,)).tolist(), flush=True)
        pool.close()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split("\n")[:3] == ["refused True True", "child 0", "parent [2.0, 2.0, 2.0, 2.0]"], r.stdout + r.stderr
    assert r.returncode == 0, r.stderr


def test_create_and_the_name_functions_refuse_what_is_not_a_shape_or_a_name_with_usage_errors():
    # Before: pybind11's "Unable to cast Python instance to C++ type" (a RuntimeError) or a
    # many-line TypeError.
    for shape in [(2.5, 3), "3", (2**63,), (-1,), [True]]:
        with pytest.raises(tp.UsageError, match="shape="):
            tp.create("tptest-never-made", shape)
    assert tp.create(f"tptest-npint-{os.getpid()}", np.int64(3)).shape == (3,)
    tp.delete(f"tptest-npint-{os.getpid()}")
    for call in (lambda: tp.create(5, (3,)), lambda: tp.attach(5), lambda: tp.delete(5), lambda: tp.put(np.ones(3), 5)):
        with pytest.raises(tp.UsageError, match="name=5: expected a str"):
            call()
    with pytest.raises(tp.UsageError, match="plugins='/x.so': expected a list"):
        tp.Pool(plugins="/x.so")


def test_a_kernel_that_is_not_a_name_is_a_usage_error(pool):
    with pytest.raises(tp.UsageError, match="kernel: expected a kernel's name"):
        pool.run(None, np.ones(4), tile=(2,))
