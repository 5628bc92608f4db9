# tilepool in a Jupyter notebook, run as a notebook runs: a real IPython kernel (Debian's
# ipykernel), cells sent one at a time by nbclient, Ctrl-C as the notebook's "interrupt the
# kernel" button sends it (SIGINT to the kernel's process group; the handler is IPython's).
import os
import signal
import sys
import threading
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def cell_text(cell):
    """What a cell printed, and the name of any error it raised."""
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif o.get("output_type") == "error":
            out.append(f"ERROR {o['ename']}: {o['evalue']}")
    return "".join(out)


def press_interrupt_once_marked(mark, pgid, timeout=60.0):
    """SIGINT to the kernel's process group 0.3 s after `mark` exists (at most `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(mark) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    os.killpg(pgid, signal.SIGINT)


def test_a_notebook_runs_jobs_shows_progress_survives_an_interrupt_and_leaves_nothing(tmp_path):
    mark = str(tmp_path / "jobs-started")
    cells = [
        f"import os, numpy as np, tilepool as tp\nMARK = {mark!r}\nprint('pid', os.getpid())",
        # A warm pool, a job with a progress bar (tqdm from Debian: a text bar in a notebook
        # without ipywidgets), the result checked against numpy.
        "pool = tp.Pool(workers=2)\n"
        "a = np.random.default_rng(0).standard_normal((365, 16, 16))\n"
        "out = pool.run('add', a, a, tile=(4, 4), progress=True)\n"
        "print('add', np.array_equal(out, a + a))",
        # The interrupt button during a job of seconds: KeyboardInterrupt in the cell.
        # The cell marks the moment its jobs start; twenty 2048^2 matmuls (about 0.6 s each
        # here) leave seconds in which to press the button, on a fast machine or a loaded one.
        "big = np.random.default_rng(1).standard_normal((2048, 2048))\n"
        "print('started', flush=True)\n"
        "open(MARK, 'w').close()\n"
        "try:\n"
        "    for _ in range(20):\n"
        "        pool.run('matmul', big, big, tile=(128, 128))\n"
        "    print('finished')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')",
        # The same pool afterwards, and a one-shot run.
        "print('after', pool.run('add', np.ones(4), np.ones(4), tile=(2,)).tolist())\n"
        "s = float(tp.run('sum', a, tile=(8, 8)))\n"
        "print('sum', abs(s - a.sum()) < 1e-9)",
        "pool.close(); del out\nimport gc; gc.collect()\n"
        "print('left', sorted(n for n in os.listdir('/dev/shm') if n.startswith(f'tilepool-{os.getpid()}-')))",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the kernel inherits it
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger: no warning lines
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120)
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            presser = None
            if "matmul" in cell.source:
                # Pressed 0.3 s after the cell's jobs start (the mark file appears): inside the
                # first matmul. What the button does for a local kernel: SIGINT to the kernel's
                # process group (jupyter_client's signal_kernel), workers included.
                pgid = os.getpgid(int(cell_text(nb.cells[0]).split()[1]))
                assert pgid != os.getpgid(0), "the kernel shares our process group: the signal would reach pytest"
                presser = threading.Thread(target=press_interrupt_once_marked, args=(mark, pgid))
                presser.start()
            try:
                client.execute_cell(cell, i)
            finally:
                if presser is not None:
                    presser.join()
        texts = [cell_text(c) for c in nb.cells]
    kernel_pid = int(texts[0].split()[1])
    assert "add True" in texts[1], texts[1]
    assert "ERROR" not in texts[1], texts[1]
    assert texts[2].split() == ["started", "interrupted"], texts[2]
    assert "after [2.0, 2.0, 2.0, 2.0]" in texts[3] and "sum True" in texts[3], texts[3]
    assert "left []" in texts[4], texts[4]
    # The kernel has exited: nothing of it in /dev/shm either.
    assert [n for n in os.listdir("/dev/shm") if n.startswith(f"tilepool-{kernel_pid}-")] == []
