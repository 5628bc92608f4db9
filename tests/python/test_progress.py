# progress=: a callable gets (done, total), True draws a bar (tqdm, else a plain line).
import numpy as np

import tilepool as tp


def test_a_progress_callable_sees_the_tiles_done_up_to_the_total():
    seen = []
    a = np.random.default_rng(0).standard_normal((768, 768))
    with tp.Pool(workers=2, mode="threads") as p:
        p.run("matmul", a, a, tile=(32, 32), progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (576, 576)
    assert all(t == 576 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_an_exception_in_the_progress_callable_stops_the_job_and_propagates():
    a = np.random.default_rng(0).standard_normal((2048, 2048))

    def fail(done, total):
        raise RuntimeError("enough")

    with tp.Pool(workers=2, mode="threads") as p:
        try:
            p.run("matmul", a, a, tile=(64, 64), progress=fail)
        except RuntimeError as e:
            assert str(e) == "enough"
        np.testing.assert_array_equal(p.run("negate", np.ones(3), tile=(1,)), -np.ones(3))


def test_progress_true_draws_a_bar_on_stderr(capsys):
    with tp.Pool(workers=2, mode="threads", progress=True) as p:
        p.run("add", np.ones((64, 64)), np.ones((64, 64)), tile=(8, 8))
    err = capsys.readouterr().err
    assert "64/64" in err


def test_without_tqdm_progress_true_writes_a_plain_line():
    from conftest import run_python
    code = ("import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None\n"
            "import numpy as np, tilepool as tp\n"
            "with tp.Pool(workers=2, mode='threads') as p:\n"
            "    p.run('add', np.ones((64, 64)), np.ones((64, 64)), tile=(8, 8), progress=True)\n")
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "64/64 tiles" in r.stderr and r.stderr.endswith("\n")  # (text mode reads \r as a newline)
