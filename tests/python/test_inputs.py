# Every kind of input and output a Python caller can pass, with what was copied
# (last_report["bytes_copied"]) checked against the promise: segments and memmapped .npy files
# go by name or path with nothing copied; other arrays are used in place where the mode can
# reach them and copied once where it cannot; non-contiguous arrays are made C-order (counted).
import numpy as np
import pytest

import tilepool as tp
from conftest import sample, unique_name

SHAPE = (365, 16, 16)
NBYTES = 365 * 16 * 16 * 8


@pytest.fixture(scope="module")
def share():
    with tp.Pool(workers=2, mode="share") as p:
        yield p


@pytest.fixture(scope="module")
def threads():
    with tp.Pool(workers=2, mode="threads") as p:
        yield p


@pytest.fixture
def ab():
    return sample("float64", SHAPE, 1), sample("float64", SHAPE, 2)


@pytest.fixture
def segments(ab):
    names = [unique_name("a"), unique_name("b")]
    arrays = [tp.put(x, n) for x, n in zip(ab, names)]
    yield names, arrays
    for n in names:
        tp.delete(n)


def test_segment_arrays_go_by_name_with_nothing_copied(share, ab, segments):
    _, (a, b) = segments
    out = share.run("add", a, b, tile=(4, 4))
    np.testing.assert_array_equal(out, ab[0] + ab[1])
    assert share.last_report["bytes_copied"] == 0


def test_attached_read_only_segments_go_by_name_with_nothing_copied(share, ab, segments):
    names, _ = segments
    a, b = tp.attach(names[0]), tp.attach(names[1])
    np.testing.assert_array_equal(share.run("add", a, b, tile=(4, 4)), ab[0] + ab[1])
    assert share.last_report["bytes_copied"] == 0


def test_shm_strings_and_paths_work_as_on_the_cli(share, ab, segments, tmp_path):
    names, _ = segments
    path = tmp_path / "b.npy"
    np.save(path, ab[1])
    for b in (str(path), path, f"shm:{names[1]}"):
        np.testing.assert_array_equal(share.run("add", f"shm:{names[0]}", b, tile=(4, 4)), ab[0] + ab[1])
        assert share.last_report["bytes_copied"] == 0


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_np_load_mmap_goes_by_path_with_nothing_copied(share, ab, tmp_path, mode):
    np.save(tmp_path / "a.npy", ab[0])
    np.save(tmp_path / "b.npy", ab[1])
    a = np.load(tmp_path / "a.npy", mmap_mode=mode)
    b = np.load(tmp_path / "b.npy", mmap_mode=mode)
    np.testing.assert_array_equal(share.run("add", a, b, tile=(4, 4)), ab[0] + ab[1])
    assert share.last_report["bytes_copied"] == 0


def test_open_memmap_goes_by_path_with_nothing_copied(share, ab, tmp_path):
    a = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.float64, shape=SHAPE)
    a[:] = ab[0]
    a.flush()
    np.testing.assert_array_equal(share.run("negate", a, tile=(4, 4)), -ab[0])
    assert share.last_report["bytes_copied"] == 0


def test_copy_on_write_memmap_is_copied_since_its_writes_are_private(share, ab, tmp_path):
    np.save(tmp_path / "a.npy", ab[0])
    a = np.load(tmp_path / "a.npy", mmap_mode="c")
    a[0, 0, 0] = 1234.0  # private to this process: workers mapping the file would not see it
    out = share.run("negate", a, tile=(4, 4))
    assert out[0, 0, 0] == -1234.0
    assert share.last_report["bytes_copied"] == NBYTES


def test_a_slice_of_a_memmap_is_not_taken_for_the_whole_file(share, ab, tmp_path):
    np.save(tmp_path / "a.npy", ab[0])
    a = np.load(tmp_path / "a.npy", mmap_mode="r")[1:]
    np.testing.assert_array_equal(share.run("negate", a, tile=(4, 4)), -ab[0][1:])


def test_plain_arrays_are_copied_once_in_share_mode(share, ab):
    np.testing.assert_array_equal(share.run("add", ab[0], ab[1], tile=(4, 4)), ab[0] + ab[1])
    assert share.last_report["bytes_copied"] == 2 * NBYTES


@pytest.mark.parametrize("mode", ["threads", "fork"])
def test_plain_arrays_are_used_in_place_in_threads_and_fork_mode(ab, mode):
    with tp.Pool(workers=2, mode=mode) as p:
        np.testing.assert_array_equal(p.run("add", ab[0], ab[1], tile=(4, 4)), ab[0] + ab[1])
        assert p.last_report["bytes_copied"] == 0


@pytest.mark.parametrize("make", [
    lambda a: a[:, :, ::2],                      # strided
    lambda a: np.asfortranarray(a[:, :, :8]),    # Fortran order
    lambda a: a[:, :, :8].astype(">f8"),         # big-endian
], ids=["strided", "fortran", "big-endian"])
def test_non_contiguous_fortran_and_big_endian_arrays_are_made_c_order_not_refused(threads, ab, make):
    a = make(ab[0])
    out = threads.run("negate", a, tile=(4, 4))
    np.testing.assert_array_equal(out, -a)
    assert threads.last_report["bytes_copied"] == a.size * 8


def test_slices_and_lists_are_arrays_too(threads, ab, segments):
    _, (a, _) = segments
    np.testing.assert_array_equal(threads.run("negate", a[10:20], tile=(4, 4)), -ab[0][10:20])
    np.testing.assert_array_equal(threads.run("add", [[1, 2], [3, 4]], np.ones((2, 2), np.int64), tile=(1, 1)),
                                  [[2, 3], [4, 5]])


def test_results_feed_later_jobs(share, ab):
    first = share.run("add", ab[0], ab[1], tile=(4, 4))
    second = share.run("negate", first, tile=(4, 4))
    np.testing.assert_array_equal(second, -(ab[0] + ab[1]))


def test_out_segment_is_written_in_place_with_nothing_copied(share, ab, segments, name):
    _, (a, b) = segments
    dst = tp.create(name, SHAPE, np.float64)
    assert share.run("add", a, b, tile=(4, 4), out=dst) is dst
    assert share.last_report["bytes_copied"] == 0
    np.testing.assert_array_equal(tp.attach(name), ab[0] + ab[1])


def test_out_plain_array_is_written_in_place_in_threads_mode_and_copied_in_share_mode(share, threads, ab, segments):
    _, (a, b) = segments
    for pool, copied in ((threads, 0), (share, NBYTES)):
        dst = np.zeros(SHAPE)
        assert pool.run("add", a, b, tile=(4, 4), out=dst) is dst
        np.testing.assert_array_equal(dst, ab[0] + ab[1])
        assert pool.last_report["bytes_copied"] == copied


def test_out_strided_array_is_filled_through_a_c_order_stand_in(threads, ab):
    big = np.zeros((365, 16, 32))
    dst = big[:, :, ::2]
    threads.run("add", ab[0], ab[1], tile=(4, 4), out=dst)
    np.testing.assert_array_equal(big[:, :, ::2], ab[0] + ab[1])
    assert not big[:, :, 1::2].any()


def test_out_paths_and_shm_names_are_published_whole_and_returned_read_only(share, ab, segments, tmp_path, name):
    _, (a, b) = segments
    out = share.run("add", a, b, tile=(4, 4), out=tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ab[0] + ab[1])
    np.testing.assert_array_equal(out, ab[0] + ab[1])
    out = share.run("add", a, b, tile=(4, 4), out=f"shm:{name}")
    assert not out.flags.writeable and tp.name_of(out) == name
    np.testing.assert_array_equal(out, ab[0] + ab[1])
    with pytest.raises(tp.Exists):
        share.run("add", a, b, tile=(4, 4), out=f"shm:{name}")
    share.run("negate", a, tile=(4, 4), out=f"shm:{name}", force=True)
    np.testing.assert_array_equal(tp.attach(name), -ab[0])


def test_one_shot_run_works_like_the_cli(ab, tmp_path):
    np.save(tmp_path / "a.npy", ab[0])
    np.save(tmp_path / "b.npy", ab[1])
    out = tp.run("add", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), out=str(tmp_path / "out.npy"), tile=(4, 4))
    np.testing.assert_array_equal(out, ab[0] + ab[1])
    np.testing.assert_array_equal(tp.run("add", ab[0], ab[1], tile=(4, 4), mode="threads"), ab[0] + ab[1])


# Found by a fresh user's review: an np.load(mmap_mode="r") array whose file was replaced since
# (renamed over with another of the same shape and dtype) was read by its path: the job read
# the new file instead of the array it was given, with no error, in every mode.
@pytest.mark.parametrize("mode", tp.MODES)
def test_a_memmap_whose_file_was_replaced_since_is_read_as_the_array_it_is(mode, tmp_path):
    import os
    path = str(tmp_path / "m.npy")
    base = np.arange(64, dtype=np.float64).reshape(8, 8)
    np.save(path, base)
    m = np.load(path, mmap_mode="r")
    np.save(path + ".new.npy", base * 100)
    os.rename(path + ".new.npy", path)
    with tp.Pool(workers=2, mode=mode) as pool:
        out = pool.run("negate", m, tile=(4, 4))
        assert np.array_equal(out, -base), "the job read the file that replaced the array's"
        if mode == "share":
            assert pool.last_report["bytes_copied"] == base.nbytes  # its memory, copied once into a job segment
        unchanged = np.load(path, mmap_mode="r")  # the path's file, now: by path, nothing copied
        assert np.array_equal(pool.run("negate", unchanged, tile=(4, 4)), -100 * base)
        if mode == "share":
            assert pool.last_report["bytes_copied"] == 0


# Found by a fresh user's review: out= another mapping of an input's segment or file (not the
# same ndarray) was written in place while tiles still read it: wrong results with exit 0 (share,
# fork, threads), or a job that failed after it had written over its input file.
@pytest.mark.parametrize("mode", tp.MODES)
def test_an_output_that_maps_an_inputs_segment_or_file_is_built_apart(mode, tmp_path):
    base = np.arange(64, dtype=np.float64).reshape(8, 8)
    name = unique_name("alias")
    with tp.Pool(workers=2, mode=mode) as pool:
        expected = pool.run("blur3x3", base, tile=(2, 2))
        s = tp.put(base, name)
        try:
            out = tp.attach(name, writable=True)  # the same segment, another mapping
            pool.run("blur3x3", s, tile=(2, 2), out=out)
            assert np.allclose(out, expected)
            del out
        finally:
            del s
            tp.delete(name)
        path = str(tmp_path / "m.npy")
        np.save(path, base)
        pool.run("blur3x3", path, tile=(2, 2), out=np.load(path, mmap_mode="r+"))  # the same file
        assert np.allclose(np.load(path), expected)


# Found by a fresh user's review: a big-endian .npy path is converted into memory of its own
# (mapping it in place would give the kernel byte-swapped numbers), but bytes_copied said 0.
@pytest.mark.parametrize("mode", ["share", "threads"])
def test_a_big_endian_npy_path_is_converted_and_the_conversion_counted(mode, tmp_path):
    path = str(tmp_path / "be.npy")
    base = np.arange(64, dtype=np.float64).reshape(8, 8)
    np.save(path, base.astype(">f8"))
    np.save(str(tmp_path / "le.npy"), base)
    with tp.Pool(workers=2, mode=mode) as pool:
        assert np.array_equal(pool.run("negate", path, tile=(4, 4)), -base)
        assert pool.last_report["bytes_copied"] == base.nbytes
        pool.run("negate", str(tmp_path / "le.npy"), tile=(4, 4))
        assert pool.last_report["bytes_copied"] == 0  # mapped in place


# Found by a fresh user's review: the same array passed twice was copied twice in share mode.
def test_the_same_array_passed_twice_is_copied_once(share, ab):
    x = ab[0]
    assert np.array_equal(share.run("add", x, x, tile=(4, 4)), x + x)
    assert share.last_report["bytes_copied"] == x.nbytes
