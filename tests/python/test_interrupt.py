# Ctrl-C, the GIL and threads: KeyboardInterrupt stops a job promptly and leaves nothing, no
# C++ signal handler is installed, other Python threads run while a job does, a pool serves
# several threads, and fork mode is refused while other threads exist.
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import tilepool as tp


def caught_signals():
    """The standard signals (1-31) this process has handlers for. glibc's own real-time
    signals (32, 33: thread cancellation and set*id across threads) are glibc's business."""
    with open("/proc/self/status") as f:
        mask = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
    return mask & 0x7FFFFFFF


# fork mode's launcher gives its children a grace period when a job is stopped (about 2 s).
PROMPT = {"share": 2.0, "copy": 2.0, "threads": 2.0, "fork": 3.5}


@pytest.mark.parametrize("mode", tp.MODES)
def test_ctrl_c_raises_keyboard_interrupt_promptly_stops_the_job_and_the_pool_stays_usable(mode):
    code = textwrap.dedent(f"""
        import time, numpy as np, tilepool as tp
        pool = tp.Pool(workers=2, mode={mode!r})
        a = np.random.default_rng(0).standard_normal((2048, 2048))
        pool.run("add", a[:8, :8], a[:8, :8], tile=(4, 4))
        print("ready", flush=True)
        t0 = time.monotonic()
        try:
            pool.run("matmul", a, a, tile=(128, 128))   # seconds of work (256 tiles)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        out = pool.run("add", np.ones(4), np.ones(4), tile=(2,))
        print("after", out.tolist(), flush=True)
        pool.close()
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        reacted = time.monotonic() - sent
        assert line == "interrupted"
        assert reacted < PROMPT[mode], f"KeyboardInterrupt took {reacted:.2f} s"
        # Process modes restart their workers; threads finish the stopped job's tiles first.
        assert child.stdout.readline().strip() == "after [2.0, 2.0, 2.0, 2.0]"
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    left = [n for n in os.listdir("/dev/shm") if n.startswith(f"tilepool-{child.pid}-")]
    assert left == []


def test_no_signal_handler_is_installed_in_the_python_process():
    before = caught_signals()
    handler = signal.getsignal(signal.SIGINT)
    with tp.Pool(workers=2) as p:
        p.run("add", np.ones((64, 64)), np.ones((64, 64)), tile=(8, 8))
    with tp.Pool(workers=2, mode="fork") as p:
        p.run("add", np.ones((64, 64)), np.ones((64, 64)), tile=(8, 8))
    assert caught_signals() == before
    assert signal.getsignal(signal.SIGINT) is handler


def test_other_python_threads_run_while_a_job_runs():
    a = np.random.default_rng(0).standard_normal((1024, 1024))
    counted = 0
    stop = threading.Event()

    def count():
        nonlocal counted
        while not stop.is_set():
            counted += 1

    with tp.Pool(workers=2, mode="threads") as p:
        t = threading.Thread(target=count)
        t.start()
        try:
            start = counted
            t0 = time.monotonic()
            p.run("matmul", a, a, tile=(64, 64))
            elapsed = time.monotonic() - t0
            during = counted - start
        finally:
            stop.set()
            t.join()
    # With the GIL held for the job, the counter would stand still for its whole length.
    assert elapsed > 0.05 and during > 1000, (elapsed, during)


def test_a_pool_serves_several_threads_one_job_at_a_time():
    errors = []
    with tp.Pool(workers=2) as p:
        def work(seed):
            try:
                rng = np.random.default_rng(seed)
                for _ in range(25):
                    a, b = rng.standard_normal((40, 40)), rng.standard_normal((40, 40))
                    np.testing.assert_array_equal(p.run("add", a, b, tile=(8, 8)), a + b)
            except Exception as e:  # collected: an assertion in a thread does not fail the test
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_fork_mode_is_refused_while_other_threads_exist():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(tp.UsageError, match="fork"):
            tp.Pool(mode="fork")
    finally:
        stop.set()
        t.join()
    with tp.Pool(workers=2, mode="fork") as p:  # alone again: allowed
        t = threading.Thread(target=stop.wait)
        stop.clear()
        t.start()
        try:
            with pytest.raises(tp.UsageError, match="fork"):
                p.run("negate", np.ones(4), tile=(2,))
        finally:
            stop.set()
            t.join()
        np.testing.assert_array_equal(p.run("negate", np.ones(4), tile=(2,)), -np.ones(4))
