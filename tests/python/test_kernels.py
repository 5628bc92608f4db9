# Every built-in kernel and every dtype it accepts, in all four modes, against numpy.
import numpy as np
import pytest

import tilepool as tp
from conftest import sample

ALL = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
NUMERIC = ALL[1:]
SHAPE = (3, 10, 12)  # with tile (4, 5): partial edge tiles on both axes
TILE = (4, 5)


@pytest.fixture(scope="module", params=tp.MODES)
def pool(request):
    with tp.Pool(workers=2, mode=request.param) as p:
        yield p


def blur_reference(a):
    out_dtype = np.float32 if a.dtype == np.float32 else np.float64
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(a.astype(out_dtype), pad, mode="edge")
    h, w = a.shape[-2:]
    o = p[..., 0:h, 0:w].copy()
    for di in range(3):
        for dj in range(3):
            if di or dj:
                o += p[..., di:di + h, dj:dj + w]
    return o / out_dtype(9)


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if np.dtype(dtype) == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


def test_kernels_lists_the_builtins_with_their_dtypes():
    ks = {k["name"]: k for k in tp.kernels()}
    assert {"add", "negate", "square", "add_scalar", "blur3x3", "matmul", "sum"} <= set(ks)
    assert ks["add"]["arity"] == 2 and ks["add"]["dtypes"] == ALL
    assert ks["sum"]["reduction"] == "sum" and ks["add"]["reduction"] is None
    assert ks["matmul"]["dtypes"] == ["float32", "float64"]
    assert all(k["plugin"] is None and k["summary"] for k in ks.values())
    assert [p["name"] for p in ks["add_scalar"]["params"]] == ["value"] and ks["add"]["params"] == []
    assert ks["add_scalar"]["params"][0]["type"] == "number"


@pytest.mark.parametrize("dtype", ALL)
def test_add_matches_numpy(pool, dtype):
    a, b = sample(dtype, SHAPE, 1), sample(dtype, SHAPE, 2)
    out = pool.run("add", a, b, tile=TILE)
    assert out.dtype == a.dtype and out.shape == SHAPE
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_negate_matches_numpy(pool, dtype):
    a = sample(dtype, SHAPE)
    np.testing.assert_array_equal(pool.run("negate", a, tile=TILE), -a)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_square_matches_numpy(pool, dtype):
    a = sample(dtype, SHAPE)
    np.testing.assert_array_equal(pool.run("square", a, tile=TILE), a * a)


@pytest.mark.parametrize("dtype", NUMERIC)
def test_add_scalar_matches_numpy(pool, dtype):
    a = sample(dtype, SHAPE)
    out = pool.run("add_scalar", a, tile=TILE, params={"value": 5})
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out, a + a.dtype.type(5))


@pytest.mark.parametrize("dtype", NUMERIC)
def test_blur3x3_matches_numpy(pool, dtype):
    a = sample(dtype, SHAPE)
    out = pool.run("blur3x3", a, tile=TILE)
    ref = blur_reference(a)
    assert out.dtype == ref.dtype
    np.testing.assert_allclose(out, ref, **tolerance(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_matches_numpy(pool, dtype):
    a, b = sample(dtype, (20, 12), 1), sample(dtype, (12, 9), 2)
    out = pool.run("matmul", a, b, tile=(8, 4))
    assert out.shape == (20, 9)
    np.testing.assert_allclose(out, a @ b, rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-3 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("dtype", ALL)
def test_sum_matches_numpy(pool, dtype):
    a = sample(dtype, SHAPE)
    total = pool.run("sum", a, tile=(4, 4))
    assert isinstance(total, np.ndarray) and total.shape == ()
    if np.dtype(dtype).kind in "biu":
        assert total.dtype == np.int64
        assert int(total) == int(a.sum(dtype=np.int64))
    else:
        assert total.dtype == np.float64
        np.testing.assert_allclose(total, a.sum(dtype=np.float64), rtol=1e-10)


def test_the_seed_job_matches_numpy_and_reports_like_the_cli(pool):
    a, b = sample("float64", (365, 16, 16), 1), sample("float64", (365, 16, 16), 2)
    out = pool.run("add", a, b, tile=(4, 4))
    np.testing.assert_array_equal(out, a + b)
    r = pool.last_report
    assert r["kernel"] == "add" and r["mode"] == pool.mode and r["tiles"] == 16 and r["workers"] == 2
    assert r["shape"] == [365, 16, 16] and r["tile"] == [4, 4]
    assert {"wall_s", "phases", "bytes_copied", "peak_pss_bytes", "retries"} <= set(r)


def test_same_result_whatever_the_mode_and_worker_count():
    a = sample("float64", (5, 33, 31), 7)
    results = []
    for mode in tp.MODES:
        for workers in (1, 2):
            with tp.Pool(workers=workers, mode=mode) as p:
                results.append(p.run("blur3x3", a, tile=(8, 8)))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
