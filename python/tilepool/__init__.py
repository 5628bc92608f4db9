"""tilepool for numpy: shared-memory arrays, warm worker pools and tile kernels, with no copies.

    import numpy as np, tilepool as tp

    a = tp.create("grid", (365, 16, 16), np.float64)   # a new named segment: an ndarray over it
    b = tp.attach("grid")                              # by name alone (read-only unless writable=True)
    with tp.Pool(workers=2) as pool:                   # worker processes, started once
        out = pool.run("add", a, b, tile=(4, 4))       # a new ndarray: nothing copied
        print(pool.last_report["wall_s"])
    tp.delete("grid")                                  # the creator removes the name

Arrays over tilepool segments go to workers by name, np.load(..., mmap_mode=...) /
np.memmap arrays of .npy files by path; any other array is used in place where the mode can
reach it (threads, fork, copy) and copied once into a job segment where it cannot (share), and
``last_report["bytes_copied"]`` says so. See the README's Python section.

Errors: TilepoolError and its subclasses UsageError, BadInput (both ValueError), Exists
(BadInput and FileExistsError), NoSpace and OSFailure (OSError), JobFailed (RuntimeError).
"""

import builtins as _builtins
import json as _json
import numbers as _numbers
import os as _os
import sys as _sys
import threading as _threading
import time as _time

import numpy as _np

from . import _core
from ._core import BadInput, Exists, JobFailed, NoSpace, OSFailure, TilepoolError, UsageError

__all__ = [
    "create", "attach", "put", "delete", "list", "gc", "kernels", "run", "Pool", "name_of",
    "TilepoolError", "UsageError", "BadInput", "Exists", "NoSpace", "OSFailure", "JobFailed",
    "MODES",
]

#: The modes a Pool runs in: how workers get at the data.
MODES = tuple(_core.MODES)  # the launcher table's names: share, fork, copy, threads

_PACKAGE_DIR = _os.path.dirname(_os.path.abspath(__file__))
_MAX_WORKERS = _core.MAX_WORKERS


def _worker_executable():
    # <prefix>/lib/python3/dist-packages/tilepool -> <prefix>/bin/tilepool-worker, in an install
    # and in the build tree alike (never beside sys.executable: that is python3's folder).
    override = _os.environ.get("TILEPOOL_WORKER")
    if override:
        return override
    return _os.path.normpath(_os.path.join(_PACKAGE_DIR, "..", "..", "..", "..", "bin", "tilepool-worker"))


def _backing(backing):
    return None if backing is None else _os.fspath(backing) if not isinstance(backing, str) else backing


def _checked_name(name):
    """A segment name must be a str; UsageError naming it otherwise (not pybind11's TypeError)."""
    if not isinstance(name, str):
        raise UsageError(f"name={name!r}: expected a str, like \"grid\"")
    return name


def _checked_shape(shape):
    """shape as a tuple of ints >= 0 (an int, numpy integers too); UsageError naming it otherwise."""
    return _int_tuple("shape", shape, 0, "expected an int or a tuple of ints, like (365, 16, 16)",
                      "expected extents from 0 to 2**63 - 1")


def _int_tuple(keyword, value, lowest, expected, out_of_range):
    """`value` (an int or an iterable of ints, numpy integers too, not bools) as a tuple of ints
    from `lowest` to 2**63 - 1; UsageError "keyword=value: expected" / "...: out_of_range"."""
    extents = (value,) if isinstance(value, (int, _np.integer)) else value
    try:
        values = tuple(extents)
    except TypeError:
        raise UsageError(f"{keyword}={value!r}: {expected}") from None
    if not all(isinstance(v, (int, _np.integer)) and not isinstance(v, bool) for v in values):
        raise UsageError(f"{keyword}={value!r}: {expected}")
    if not all(lowest <= v < 2**63 for v in values):
        raise UsageError(f"{keyword}={value!r}: {out_of_range}")
    return tuple(int(v) for v in values)


# --- named segments -------------------------------------------------------------------------------

def create(name, shape, dtype=_np.float64, *, backing=None):
    """A new named segment, zero-filled: returns a writable ndarray over it.

    ``shape`` is an int or a tuple, ``dtype`` one of bool, int8..int64, uint8..uint64, float32,
    float64. The segment is an .npy file in /dev/shm (or under ``backing="file:DIR"``): numpy
    sees it as ``np.load("/dev/shm/NAME", mmap_mode="r+")``. The name stays until
    ``delete(name)``; the array stays valid after that, until Python drops it.
    Raises Exists if the name is taken, UsageError for a bad name or dtype, NoSpace if the
    store is too small.
    """
    return _core.create(_checked_name(name), _checked_shape(shape), dtype, backing=_backing(backing))


def attach(name, *, writable=False, backing=None):
    """The ndarray of an existing segment, by name alone (read-only unless ``writable=True``).

    Attaching never removes the name. Raises BadInput if there is no such segment or it is not
    an array of ours.
    """
    return _core.attach(_checked_name(name), writable=writable, backing=_backing(backing))


def put(array, name, *, backing=None):
    """Copies ``array`` (an ndarray, anything np.asarray takes, or a path to an .npy file) into
    a new named segment and returns the ndarray over it. The name appears only once the whole
    array is in. Raises Exists if the name is taken."""
    return _core.put(array, _checked_name(name), backing=_backing(backing))


def delete(name, *, backing=None):
    """Removes a named segment. Arrays over it stay valid until Python drops them.
    Raises BadInput if there is no such segment, or if, in a directory store (backing="file:DIR"),
    the name holds a file that is not a segment (it is left alone); UsageError for a running
    job's own segment (tilepool-PID-...: it goes when that job ends)."""
    _core.delete(_checked_name(name), backing=_backing(backing))


def list(*, backing=None):  # noqa: A001 - the API's name, as `tilepool ls`
    """Our named segments and job segments, as `tilepool ls` shows them: a list of dicts with
    name, bytes, kind ("array", "control", "other"), dtype, shape, state ("named", "live",
    "stale") and pid (the owner of a job segment)."""
    return _core.list(backing=_backing(backing))


def gc(*, backing=None):
    """Removes job segments whose owner process is gone (as `tilepool gc`); returns their names."""
    return _core.gc(backing=_backing(backing))


def name_of(array):
    """The segment name an ndarray lives in (tilepool made it: create/attach/put), or None."""
    base = array
    while isinstance(base, _np.ndarray):
        base = base.base
    return base.name if isinstance(base, _core.ArrayMemory) else None


def kernels(plugins=()):
    """The kernels: a list of dicts with name, summary, arity, dtypes, reduction ("sum" or None),
    params (dicts of name, type "number"/"integer"/"text", default or None if required, meaning)
    and plugin (the file a plugin kernel came from, else None). ``plugins`` are kernel plugin
    files (lib*.so) to load first."""
    return _core.kernels([_os.fspath(p) for p in plugins])


# --- progress -------------------------------------------------------------------------------------

class _ProgressBar:
    """progress=True: a tqdm bar (a notebook widget where tqdm.auto finds one), else a plain line
    on stderr rewritten with \\r."""

    def __init__(self):
        self._bar = None
        self._plain = False
        self._start = _time.monotonic()

    def __call__(self, done, total):
        if self._bar is None and not self._plain:
            try:
                from tqdm.auto import tqdm

                class _Bar(tqdm):
                    # No monitor thread: a thread left behind would make fork mode refuse.
                    monitor_interval = 0

                self._bar = _Bar(total=total, unit="tile")
            except Exception:  # no tqdm: a plain line
                self._plain = True
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
        else:
            elapsed = _time.monotonic() - self._start
            rate = done / elapsed if elapsed > 0 else 0.0
            _sys.stderr.write(f"\r{done}/{total} tiles  {rate:,.0f} tiles/s")
            _sys.stderr.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            _sys.stderr.write("\n")


def _progress_callback(progress):
    if progress is None or progress is False:
        return None
    if progress is True:
        return _ProgressBar()
    if callable(progress):
        return progress
    raise UsageError(f"progress={progress!r}: expected True, False, None or a callable(done, total)")


# --- pools and jobs -------------------------------------------------------------------------------

def _check_fork_is_safe():
    threads = _threading.active_count()
    if threads > 1:
        raise UsageError(
            f"mode='fork' in a process with {threads} Python threads: a forked child would inherit "
            "locks those threads hold; use mode='share' (the same no-copy sharing, spawned workers), "
            "or fork before starting threads")


class Pool:
    """A pool of workers, started once and reused for many jobs (load once, run many).

    ``workers``: how many (None: one per core). ``mode``: "share" (worker processes attach the
    arrays by name; the default), "fork" (workers forked per job, inputs copy-on-write; refused
    while the process has other Python threads), "copy" (tiles' bytes cross pipes, as
    pool.map over slices does), "threads" (C++ threads in this process). ``backing``: where job
    segments go, "shm" or "file:DIR". ``plugins``: kernel plugin files to load.
    ``tile_timeout``: seconds after which a worker holding one tile is killed and the tile retried.
    ``progress``: the default for run(progress=). ``measure_memory``: fill
    last_report["peak_pss_bytes"] (this process and its workers, read after each job's last
    tile: walking their page tables costs milliseconds per job).

    Safe to use from several Python threads: jobs run one at a time, in the order they get the
    pool. While a job runs the GIL is released. Ctrl-C during run() raises KeyboardInterrupt,
    stops the job, removes its segments and leaves the pool usable. close() (or leaving the
    ``with`` block) stops the workers; arrays returned by run() stay valid.
    """

    def __init__(self, workers=None, mode="share", backing=None, plugins=(), tile_timeout=None, progress=None,
                 measure_memory=False):
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= _MAX_WORKERS):
            raise UsageError(f"workers={workers!r}: expected an int from 1 to {_MAX_WORKERS:,}, or None (one per core)")
        if not isinstance(mode, str):
            raise UsageError(f"mode={mode!r}: not a mode (expected {', '.join(MODES[:-1])} or {MODES[-1]})")
        if mode == "fork":
            _check_fork_is_safe()
        self._progress = progress
        if isinstance(plugins, (str, bytes)) or hasattr(plugins, "__fspath__"):
            raise UsageError(f"plugins={plugins!r}: expected a list of plugin files, like [\"libmine.so\"]")
        self._backing = _backing(backing)
        self._core = _core.Pool(
            0 if workers is None else workers, mode, self._backing, [_os.fspath(p) for p in plugins],
            _seconds("tile_timeout", tile_timeout), _worker_executable(), bool(measure_memory))
        self._report = None
        self._report_json = None

    def run(self, kernel, *inputs, out=None, tile=None, params=None, progress=None, force=False,
            check_regions=False):
        """Runs ``kernel`` over ``inputs`` cut into tiles, and returns the result.

        inputs: ndarrays (over segments, np.memmap / np.load(mmap_mode=) of .npy files, or any
        array of a supported dtype: non-contiguous, Fortran-order and big-endian ones are made
        C-order first), or paths / "shm:NAME" strings. ``tile``: tile extents for the last axes,
        e.g. (4, 4); None for a kernel over the whole array. ``params``: the kernel's parameters,
        e.g. {"value": 5}. ``out``: None returns a new ndarray (a 0-d one for reductions) that
        keeps its memory while Python holds it and leaves nothing in /dev/shm; an ndarray is
        written and returned; a path or "shm:NAME" is written as `tilepool run --output` writes
        it (whole or not at all; ``force=True`` replaces an existing one) and returned opened
        read-only. ``progress``: True for a bar, or a callable(done, total). ``check_regions``:
        run each tile on copies of only the input regions its kernel declares and its own output
        box (as mode="copy" always does), so a kernel that reads outside them raises JobFailed
        naming the region instead of reading undeclared data; for testing kernels (it costs a
        copy of each tile).

        Raises UsageError / BadInput / Exists / NoSpace before any work, JobFailed if a kernel or
        worker fails, KeyboardInterrupt on Ctrl-C (the job stopped and cleaned up).
        """
        if not isinstance(kernel, str):
            raise UsageError(f"kernel: expected a kernel's name (a str, like \"add\"), not {type(kernel).__name__}")
        if self._core.mode == "fork":
            _check_fork_is_safe()
        tile, params = _checked_tile(tile), _checked_params(params)
        callback = _progress_callback(self._progress if progress is None else progress)
        try:
            result = self._core.run(kernel, inputs, out, tile, params, callback, force, bool(check_regions))
        finally:
            self._report = None
            if isinstance(callback, _ProgressBar):
                callback.close()
        if result is None and out is not None:
            return _open_output(out, self._backing)
        return result

    @property
    def last_report(self):
        """The last job's report: the fields `tilepool run --json` prints (mode, kernel, workers,
        tiles, shape, tile, wall_s, phases, bytes_copied, peak_pss_bytes, retries), as a dict."""
        text = self._core.last_report
        if not text:
            return None
        if self._report is None or self._report_json != text:
            self._report, self._report_json = _json.loads(text), text
        return self._report

    @property
    def mode(self):
        return self._core.mode

    @property
    def workers(self):
        return self._core.workers

    @property
    def spawn_seconds(self):
        """Seconds from the first worker spawned to the last one ready (0 for threads mode)."""
        return self._core.spawn_seconds

    @property
    def worker_pids(self):
        return self._core.worker_pids

    @property
    def closed(self):
        return self._core.closed

    def close(self):
        """Stops and reaps the workers (waits for a job another thread is running)."""
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"mode={self.mode!r}, workers={self.workers}"
        return f"<tilepool.Pool {state}>"


def _seconds(keyword, value):
    """`value` (None: 0, no timeout) as float seconds; a str or another non-number is a TypeError."""
    if value is None:
        return 0.0
    if isinstance(value, (str, bytes)) or not isinstance(value, _numbers.Real):
        raise TypeError(f"{keyword}={value!r}: expected a number of seconds")
    return float(value)


def _open_output(out, backing):
    text = _os.fsdecode(out)
    if text.startswith("shm:"):
        return attach(text[4:], backing=backing)  # where the pool's backing put it
    return _np.load(text, mmap_mode="r")


def _checked_tile(tile):
    """tile as a tuple of ints, or None; UsageError naming it otherwise (not a pybind11 cast error)."""
    if tile is None:
        return None
    return _int_tuple("tile", tile, 1, "expected a tuple of positive integers, like (4, 4)",
                      "expected a tuple of positive integers below 2**63, like (4, 4)")


def _checked_params(params):
    """params as a dict of str keys, or {}; UsageError naming it otherwise."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise UsageError(f"params: expected a dict of parameter names to values, like {{\"value\": 5}}; got {type(params).__name__}")
    if not all(isinstance(k, str) for k in params):
        bad = next(k for k in params if not isinstance(k, str))
        raise UsageError(f"params: the key {bad!r} is not a str (expected parameter names, like {{\"value\": 5}})")
    return params


def run(kernel, *inputs, out=None, tile=None, params=None, mode="share", workers=None, backing=None, plugins=(),
        tile_timeout=None, progress=None, measure_memory=False, force=False, check_regions=False):
    """One job on a pool started for it and stopped after, like `tilepool run`:

        tp.run("add", "a.npy", "b.npy", out="out.npy", tile=(4, 4))

    Arguments as Pool() and Pool.run(). For many jobs, keep a Pool: starting one costs more than
    a small job.
    """
    with Pool(workers=workers, mode=mode, backing=backing, plugins=plugins, tile_timeout=tile_timeout,
              measure_memory=measure_memory) as pool:
        return pool.run(kernel, *inputs, out=out, tile=tile, params=params, progress=progress, force=force,
                        check_regions=check_regions)
