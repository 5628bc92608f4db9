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
from conftest import BUILD_DIR, PLUGIN_DIR


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
        import time, weakref, numpy as np, tilepool as tp
        pool = tp.Pool(workers=2, mode={mode!r})
        a = np.random.default_rng(0).standard_normal((2048, 2048))
        pool.run("add", a[:8, :8], a[:8, :8], tile=(4, 4))
        print("ready", flush=True)
        t0 = time.monotonic()
        try:
            for _ in range(20):   # seconds of work: a 2048^2 matmul takes about 0.6 s
                pool.run("matmul", a, a, tile=(128, 128))
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        # The stopped job holds nothing of its arrays once run() has raised (before: until the
        # pool's next job had run).
        held = weakref.ref(a)
        del a
        print("released", held() is None, flush=True)
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
        assert child.stdout.readline().strip() == "released True"
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


@pytest.mark.parametrize("mode", ["share", "copy"])
def test_tile_timeout_kills_a_hung_worker_and_its_tile_is_retried(mode, tmp_path):
    # The worker that claims tile 5 stops itself (SIGSTOP, once: the hook in tilepool-worker for
    # fault tests); Pool(tile_timeout=0.5) kills it and the tile runs again on a new worker.
    code = textwrap.dedent(f"""
        import numpy as np, tilepool as tp
        a = np.arange(64.0).reshape(8, 8)
        with tp.Pool(workers=2, mode={mode!r}, tile_timeout=0.5) as p:
            out = p.run("negate", a, tile=(2, 2))
            print(np.array_equal(out, -a), p.last_report["retries"], flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               TILEPOOL_FAULT=f"hang:5:{tmp_path / 'once'}",
               TILEPOOL_WORKER=os.path.join(BUILD_DIR, "bin", "tilepool-worker-faults"))  # the hook's worker
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    correct, retries = r.stdout.split()
    # Share mode retries the hung tile; copy mode every tile the killed worker had in flight.
    assert correct == "True" and (int(retries) == 1 if mode == "share" else int(retries) >= 1), r.stdout
    assert (tmp_path / "once").exists()  # the fault did happen
    assert time.monotonic() - t0 < 20


def test_tile_timeout_is_refused_in_threads_mode_and_when_negative():
    with pytest.raises(tp.UsageError, match=r"^tile_timeout=1: threads mode cannot stop a worker that holds a tile too "
                                            r"long \(use a mode with worker processes: share, fork or copy\)$"):
        tp.Pool(mode="threads", tile_timeout=1)
    with pytest.raises(tp.UsageError, match="tile_timeout"):
        tp.Pool(tile_timeout=-1)
    # Past the command line's range (1e9 s) the milliseconds overflowed: every tile was "killed
    # after the tile timeout". A string was read as a number.
    with pytest.raises(tp.UsageError, match=r"tile_timeout=10000000000: out of range: expected 0 \(no timeout\) to 1000000000"):
        tp.Pool(tile_timeout=1e10)
    with pytest.raises(TypeError, match="tile_timeout='1': expected a number of seconds"):
        tp.Pool(tile_timeout="1")


def script_reporting_an_interrupt(prelude, call):
    """A python3 -c script: `prelude`, then "ready", then `call`, then "finished" or, on
    KeyboardInterrupt, "interrupted" (one line each, flushed)."""
    return textwrap.dedent(f"""
        import numpy as np, tilepool as tp
        {prelude}
        print("ready", flush=True)
        try:
            {call}
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)


# Before: a plugin whose static initializer never returns kept the interpreter waiting for its
# probe child for good (Python's SIGINT handler took the signal; tilepool's probe never saw it),
# and a Pool of hundreds of workers finished starting all of them before Ctrl-C was seen.
@pytest.mark.parametrize("call", [
    "tp.kernels(plugins=[HANG])",
    "tp.Pool(workers=2, plugins=[HANG])",
    "tp.run('add', np.ones(4), np.ones(4), tile=(2,), plugins=[HANG])",
    "tp.Pool(workers=2000)",  # about 2 s of starts here (0.3 s for 300 since spawns use vfork)
])
def test_ctrl_c_to_the_interpreter_alone_stops_a_plugin_that_hangs_while_it_loads_and_a_pool_that_starts(call):
    hang = os.path.join(PLUGIN_DIR, "libtptest_hang_on_load.so")
    code = script_reporting_an_interrupt(f"HANG = {hang!r}", call)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # A process group of its own, and the signal to the interpreter's pid alone: what
    # `kill -INT PID` does (a terminal's Ctrl-C would reach the probe child too).
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        reacted = time.monotonic() - sent
        assert line == "interrupted"
        assert reacted < 2.0, f"KeyboardInterrupt took {reacted:.2f} s"
        assert child.wait(timeout=30) == 0
        # Nothing of the run is left: no probe child, no worker in the interpreter's group.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and subprocess.run(["pgrep", "-g", str(child.pid)], capture_output=True).returncode == 0:
            time.sleep(0.05)
        assert subprocess.run(["pgrep", "-g", str(child.pid)], capture_output=True).returncode == 1
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"tilepool-{child.pid}-")] == []


# Found by a fresh user's review: Ctrl-C during tp.put(path) or tp.create of a big array let the
# copy or reservation run to its end, gave the name, and then raised KeyboardInterrupt: the user
# never got the array and the name stayed (gc never removes a named segment).
@pytest.mark.parametrize("call", ["tp.put(BIG, NAME)", "tp.create(NAME, (2**28,))"])
def test_ctrl_c_during_put_or_create_raises_keyboard_interrupt_and_leaves_no_name(call, tmp_path):
    big = tmp_path / "big.npy"
    np.lib.format.open_memmap(big, mode="w+", dtype="f8", shape=(2**28,)).flush()  # 2 GiB, sparse
    name = f"tptest-interrupt-{os.getpid()}-{call[3:6]}"
    code = script_reporting_an_interrupt(f"BIG, NAME = {str(big)!r}, {name!r}", call)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    if line == "finished":  # the work was over before the signal: the name is the user's
        tp.delete(name)
        pytest.skip("the call finished before the signal")
    assert line == "interrupted"
    assert not os.path.exists(f"/dev/shm/{name}"), "the name was given although KeyboardInterrupt was raised"
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"tilepool-{child.pid}-")] == []
