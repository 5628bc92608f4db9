# Users' kernel plugins from Python: listed by tp.kernels(plugins=), run by a Pool(plugins=) in
# every mode (share-mode workers load the plugin themselves).
import os

import numpy as np
import pytest

import tilepool as tp
from conftest import PLUGIN_DIR

PLUGIN = os.path.join(PLUGIN_DIR, "libtptest_kernels.so")
pytestmark = pytest.mark.skipif(not os.path.exists(PLUGIN),
                                reason="tests/plugins not built (cmake --build ... --target tptest_kernels)")


def cross5_reference(a):
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    return p[..., 1:-1, 1:-1] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def test_kernels_lists_a_plugins_kernels_with_their_file():
    ks = {k["name"]: k for k in tp.kernels(plugins=[PLUGIN])}
    assert "tp_cross5" in ks and os.path.samefile(ks["tp_cross5"]["plugin"], PLUGIN)


@pytest.mark.parametrize("mode", tp.MODES)
def test_a_plugin_kernel_with_a_halo_runs_in_every_mode(mode):
    a = np.random.default_rng(3).standard_normal((2, 21, 17))
    with tp.Pool(workers=2, mode=mode, plugins=[PLUGIN]) as p:
        np.testing.assert_allclose(p.run("tp_cross5", a, tile=(4, 4)), cross5_reference(a), rtol=1e-12)


@pytest.mark.parametrize("mode", tp.MODES)
def test_check_regions_fails_a_kernel_that_reads_outside_its_declared_region(mode):
    # tp_next_lying reads each element's right neighbour and declares no halo.
    a = np.arange(16 * 16, dtype=np.float64).reshape(16, 16)
    with tp.Pool(workers=2, mode=mode, plugins=[PLUGIN]) as p:
        with pytest.raises(tp.JobFailed, match="tp_next_lying failed on tile .* holds only"):
            p.run("tp_next_lying", a, tile=(4, 4), check_regions=True)
        np.testing.assert_allclose(p.run("tp_cross5", a, tile=(4, 4), check_regions=True), cross5_reference(a), rtol=1e-12)


def test_a_plugin_that_is_not_one_is_bad_input(tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(tp.BadInput):
        tp.kernels(plugins=[bogus])
    no_entry = os.path.join(PLUGIN_DIR, "libtptest_no_entry.so")
    with pytest.raises(tp.BadInput, match="tilepool_plugin_entry"):
        tp.Pool(workers=1, plugins=[no_entry])


THROWING = os.path.join(PLUGIN_DIR, "libtptest_throwing.so")


@pytest.mark.parametrize("params,said", [({"kind": "exit"}, "called exit()"),
                                         ({"kind": "terminate"}, "called std::terminate()"),
                                         ({"hook": "destructor"}, "called std::terminate()")])
def test_a_kernel_that_ends_its_process_in_threads_mode_says_so_in_one_line(params, said):
    # Threads mode runs kernels in this very process: a kernel that ends it takes Python with it.
    # Before, exit(3) ended Python with status 3 and no word; std::terminate aborted it (134).
    from conftest import run_python
    code = ("import numpy as np, tilepool as tp\n"
            f"with tp.Pool(workers=2, mode='threads', plugins=[{THROWING!r}]) as p:\n"
            f"    p.run('tp_throws', np.ones((8, 8)), tile=(4, 4), params={params!r})\n"
            "print('not reached')\n")
    r = run_python(code)
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"kernel tp_throws {said}" in r.stderr and "during a threads-mode job" in r.stderr, r.stderr
    assert "terminate called" not in r.stderr


@pytest.mark.parametrize("mode", ["share", "fork", "copy"])
def test_a_kernel_that_ends_its_worker_is_a_job_failure(mode):
    with tp.Pool(workers=2, mode=mode, plugins=[THROWING]) as p:
        for params in ({"kind": "exit"}, {"kind": "terminate"}):
            with pytest.raises(tp.JobFailed, match="tp_throws"):
                p.run("tp_throws", np.ones((8, 8)), tile=(4, 4), params=params)
        np.testing.assert_array_equal(p.run("tp_throws", np.ones((8, 8)), tile=(4, 4), params={"hook": "none"}), np.ones((8, 8)))


@pytest.mark.parametrize("kind,said", [("exit", "called exit()"), ("terminate", "called std::terminate()"),
                                       ("pthread_exit", "called pthread_exit()")])
@pytest.mark.parametrize("hook", ["output_spec", "input_region"])
def test_a_kernel_hook_that_ends_the_interpreter_says_so_in_one_line(hook, kind, said):
    # output_spec (every mode) and input_region (copy mode ships regions) run in this process.
    # Before, exit() there ended Python without a word (status 3), std::terminate aborted it
    # (134) and pthread_exit printed "FATAL: exception not rethrown" and aborted.
    from conftest import run_python
    code = ("import numpy as np, tilepool as tp\n"
            f"tp.run('tp_throws', np.ones((8, 8)), tile=(4, 4), mode='copy', workers=2, plugins=[{THROWING!r}],\n"
            f"       params={{'hook': {hook!r}, 'kind': {kind!r}}})\n"
            "print('not reached')\n")
    r = run_python(code)
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert "kernel tp_throws" in r.stderr and said in r.stderr and "which ends the Python process" in r.stderr, r.stderr


def test_a_pool_whose_worker_died_after_its_last_tile_runs_the_next_jobs():
    # hook=destructor: the bound kernel's destructor throws (std::terminate) after the job's last
    # tile, so each worker dies inside a job that succeeded. Before, the next job waited for good
    # for the dead workers to leave the last job (and Ctrl-C went unheard).
    from conftest import run_python
    code = ("import numpy as np, tilepool as tp\n"
            "a = np.arange(64.0).reshape(8, 8)\n"
            f"with tp.Pool(workers=2, plugins=[{THROWING!r}]) as p:\n"
            "    for _ in range(5):  # the next job may come while the workers are still dying (a race)\n"
            "        p.run('tp_throws', a, tile=(4, 4), params={'hook': 'destructor'})\n"
            "        print(np.array_equal(p.run('tp_throws', a, tile=(4, 4), params={'hook': 'none'}), a), flush=True)\n")
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r
    assert r.stdout.split() == ["True"] * 5, r

