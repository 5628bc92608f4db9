#!/usr/bin/env python3
"""Times tilepool's four modes against what a Python user would pick instead, end to end.

Every timed run is one process, from posix_spawn to its exit (the wall time a user waits for
the command), with its output file removed and the filesystems synced beforehand (so that no
run is throttled by the writeback of another's output). Peers:
  tilepool share | fork | copy | threads    build/release/bin/tilepool run ... --mode M
  numpy, mp_pool, joblib, dask_processes, dask_threads     scripts/py_peers.py (see there)
  floor        build/release/bin/tilepool-add-floor: read, add on WORKERS threads, write (add only)
  tilepool_help, spawn_workers   `tilepool --help`, and tilepool-spawn-workers starting WORKERS
               tilepool-worker processes: the start-up floors (the 1x1 workload only)
Workloads (float64, WORKERS workers):
  one         1x1 add, 1x1 tile: no work, start-up and tear-down only (tilepool and floors)
  seed        365x16x16 add, 4x4 tiles (16 tiles)
  add         4096x4096 add, 256x256 tiles (256 tiles)
  blur        4096x4096 blur3x3 (3x3 mean, borders clamped), 256x256 tiles
  tiles65536  4096x4096 add, 16x16 tiles (65,536 tiles)
  gib         8192x16384 add (1 GiB per array), 1024x1024 tiles (tilepool and the floor only)
Runs go round-robin over the peers of a workload (run 1 of every peer, then run 2, ...), so
load from other processes on the machine spreads over all of them; the table gives medians.
Every run's output is checked against numpy (exact for add; blur3x3 is checked with
allclose(rtol=1e-12) and reported as exact when it is); a mismatch is printed loudly and
makes the exit status 1. A peer whose first run takes longer than --slow seconds is not run
again (one run, marked in the table); a run longer than --timeout is killed (its process
group) and reported as such.

Usage: compare_python.py [--runs N] [--workers W] [--quick] [--only W1,W2] [--json PATH]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import py_peers  # noqa: E402  (the blur reference: numpy, summed in tilepool's order)
import process_runs  # noqa: E402
from process_runs import timed_run  # noqa: E402

PYTHON = "/usr/bin/python3"
BIN = os.path.join(ROOT, "build", "release", "bin")
TILEPOOL = os.path.join(BIN, "tilepool")
MODES = ("share", "fork", "copy", "threads")
PY_PEERS = ("numpy", "mp_pool", "joblib", "dask_processes", "dask_threads")
FLOORS = ("floor", "tilepool_help", "spawn_workers")
PEER_LABELS = {
    "tilepool share": "tilepool `--mode share`",
    "tilepool fork": "tilepool `--mode fork`",
    "tilepool copy": "tilepool `--mode copy`",
    "tilepool threads": "tilepool `--mode threads`",
    "numpy": "numpy, one process (no pool)",
    "mp_pool": "`multiprocessing.Pool` + `SharedMemory`",
    "joblib": "joblib `Parallel` (loky, auto-memmapping)",
    "dask_processes": "dask.array, `processes` scheduler",
    "dask_threads": "dask.array, `threads` scheduler",
    "floor": "floor: C++ read, add on the workers' threads, write",
    "tilepool_help": "floor: `tilepool --help`",
    "spawn_workers": "floor: start the workers' processes (`posix_spawn`)",
}


@dataclass
class Workload:
    key: str
    title: str
    kernel: str
    shape: tuple
    tile: int
    inputs: list = field(default_factory=list)   # paths, filled in by make_inputs
    reference: object = None


WORKLOADS = [
    Workload("one", "1×1 `add`, no work", "add", (1, 1), 1),
    Workload("seed", "seed: 365×16×16 `add`, 4×4 tiles (16)", "add", (365, 16, 16), 4),
    Workload("add", "4096² `add`, 256² tiles (256)", "add", (4096, 4096), 256),
    Workload("blur", "4096² `blur3x3`, 256² tiles (256)", "blur3x3", (4096, 4096), 256),
    Workload("tiles65536", "4096² `add`, 16² tiles (65,536)", "add", (4096, 4096), 16),
    Workload("gib", "8192×16384 `add` (1 GiB arrays), 1024² tiles", "add", (8192, 16384), 1024),
]


def applies(peer, w):
    """Whether `peer` runs on workload `w`: the start-up floors on the 1x1 job only, the add
    floor on add jobs, Python peers not on the start-up and 1 GiB jobs (minutes of dask there)."""
    if peer in ("tilepool_help", "spawn_workers"):
        return w.key == "one"
    if peer == "floor":
        return w.kernel == "add"
    return peer.startswith("tilepool ") or w.key not in ("one", "gib")


def machine():
    import dask
    import joblib
    return {**process_runs.machine(ROOT), "python": platform.python_version(), "numpy": np.__version__,
            "joblib": joblib.__version__, "dask": dask.__version__}


def make_inputs(directory, workloads):
    rng = np.random.default_rng(0)
    made = {}
    for w in workloads:
        arity = 2 if w.kernel == "add" else 1
        for i in range(arity):
            path = os.path.join(directory, f"{'x'.join(map(str, w.shape))}-{'ab'[i]}.npy")
            if path not in made:
                made[path] = rng.random(w.shape)
                np.save(path, made[path])
                # Written and then read once, as a user's dataset that was just made or used.
                with open(path, "rb") as f:
                    while f.read(1 << 24):
                        pass
            w.inputs.append(path)
        arrays = [made[p] for p in w.inputs]
        w.reference = arrays[0] + arrays[1] if w.kernel == "add" else py_peers.blur_whole(arrays[0])


def command(peer, w, out, workers):
    if peer == "floor":
        return [os.path.join(BIN, "tilepool-add-floor"), out, *w.inputs, str(workers)]
    if peer == "tilepool_help":
        return [TILEPOOL, "--help"]
    if peer == "spawn_workers":
        return [os.path.join(BIN, "tilepool-spawn-workers"), str(workers), os.path.join(BIN, "tilepool-worker")]
    if peer.startswith("tilepool "):
        cmd = [TILEPOOL, "run", "--kernel", w.kernel]
        for p in w.inputs:
            cmd += ["--input", p]
        return cmd + ["--output", out, "--tile", f"{w.tile},{w.tile}", "--workers", str(workers),
                      "--mode", peer.split()[1], "--no-progress"]
    return [PYTHON, os.path.join(ROOT, "scripts", "py_peers.py"), peer, w.kernel, str(w.tile), str(workers), out,
            *w.inputs]


def leftovers(pid):
    """/dev/shm entries that a run with this pid left: tilepool's, ours (py_peers names its
    SharedMemory blocks pypeer-PID-*), joblib's memmapping folders (they carry the pid)."""
    marks = (f"tilepool-{pid}-", f"pypeer-{pid}-", f"joblib_memmapping_folder_{pid}_")
    return [e for e in os.listdir("/dev/shm") if e.startswith(marks)]


def check(w, out_path):
    """(None, exact) if the output matches numpy's, else (what is wrong, False)."""
    try:
        out = np.load(out_path)
    except Exception as e:  # noqa: BLE001  (any unreadable output is a failed check)
        return f"output unreadable: {e}", False
    if out.shape != w.reference.shape or out.dtype != w.reference.dtype:
        return f"output is {out.shape} {out.dtype}, numpy's {w.reference.shape} {w.reference.dtype}", False
    if np.array_equal(out, w.reference):
        return None, True
    diff = float(np.max(np.abs(out - w.reference)))
    if w.kernel != "add" and np.allclose(out, w.reference, rtol=1e-12, atol=1e-12):
        return None, False
    return f"differs from numpy: max |difference| {diff:g}", False


def run_all(workloads, peers, args, directory):
    results = {}   # (workload key, peer) -> {"times": [...], "note": str|None, "error": str|None}
    out = os.path.join(directory, "out.npy")
    err = os.path.join(directory, "stderr.txt")
    failures = []
    for w in workloads:
        state = {p: {"times": [], "note": None, "error": None, "exact": True} for p in peers}
        for run in range(args.runs):
            for peer in peers:
                s = state[peer]
                if s["error"] or (run > 0 and s["note"]) or not applies(peer, w):
                    continue
                if os.path.exists(out):
                    os.unlink(out)
                # Untimed: the previous run's output reaches the disk now, so no run pays for
                # another's writeback (1 GiB of dirty pages throttles whoever writes next).
                os.sync()
                seconds, pid, status = timed_run(command(peer, w, out, args.workers), args.timeout, err)
                left = leftovers(pid)
                for name in left:
                    subprocess.run(["rm", "-rf", os.path.join("/dev/shm", name)], check=False)
                if status is None:
                    s["note"] = f"killed after {args.timeout:g} s"
                    print(f"  {w.key:10} {peer:18} killed after {args.timeout:g} s", file=sys.stderr)
                    continue
                verdict = (None, True)
                if status != 0:
                    with open(err, errors="replace") as f:
                        s["error"] = f"exit status {status}: {f.read().strip()[-300:]}"
                elif peer not in ("tilepool_help", "spawn_workers") and (verdict := check(w, out))[0] is not None:
                    s["error"] = f"WRONG RESULT: {verdict[0]}"
                elif left:
                    s["error"] = f"left {left} in /dev/shm (removed)"
                if s["error"]:
                    failures.append(f"{w.key} / {peer}: {s['error']}")
                    print(f"\n*** MISMATCH OR FAILURE: {w.key} / {peer}: {s['error']} ***\n", file=sys.stderr)
                    continue
                s["times"].append(seconds)
                s["exact"] = s["exact"] and verdict[1]
                if run == 0 and seconds > args.slow and args.runs > 1:
                    s["note"] = f"1 run (over {args.slow:g} s)"
                print(f"  {w.key:10} {peer:18} run {run + 1}: {seconds * 1e3:9.1f} ms", file=sys.stderr)
        for peer in peers:
            results[(w.key, peer)] = state[peer]
        results[(w.key, "phases")] = share_phases(w, out, args.workers)
    if os.path.exists(out):
        os.unlink(out)
    return results, failures


def share_phases(w, out, workers):
    """One more share-mode run of `w`, untimed, with --json: its phases (load, spawn, compute,
    write, in seconds) and peak PSS, or None if it failed."""
    if os.path.exists(out):
        os.unlink(out)
    os.sync()
    r = subprocess.run(command("tilepool share", w, out, workers) + ["--json"], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    report = json.loads(r.stdout)
    return {**report["phases"], "wall_s": report["wall_s"], "peak_pss_bytes": report["peak_pss_bytes"]}


def phases_table(workloads, results):
    lines = ["| share mode, one `--json` run | " + " | ".join(w.title for w in workloads) + " |",
             "| --- |" + " --- |" * len(workloads)]
    for key, label in (("load_s", "load_s"), ("spawn_s", "spawn_s (2 workers)"), ("compute_s", "compute_s"),
                       ("write_s", "write_s"), ("wall_s", "wall_s (inside the process)")):
        cells = [fmt_ms(results[(w.key, "phases")][key]) if results.get((w.key, "phases")) else "—" for w in workloads]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [f"{results[(w.key, 'phases')]['peak_pss_bytes'] / 2**20:,.1f} MiB" if results.get((w.key, "phases")) else "—"
             for w in workloads]
    lines.append("| peak PSS, runner + workers | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def table(workloads, peers, results, args):
    lines = ["| peer | " + " | ".join(w.title for w in workloads) + " |",
             "| --- |" + " --- |" * len(workloads)]
    share = {w.key: results[(w.key, "tilepool share")]["times"] for w in workloads}
    for peer in peers:
        cells = []
        for w in workloads:
            r = results[(w.key, peer)]
            if not applies(peer, w):
                cells.append("")
            elif r["error"]:
                cells.append("**failed** (see below)")
            elif not r["times"]:
                cells.append(r["note"] or "—")
            else:
                med = statistics.median(r["times"])
                cell = fmt_ms(med)
                if share[w.key] and peer != "tilepool share":
                    cell += f" ({med / statistics.median(share[w.key]):.1f}×)"
                if r["note"]:
                    cell += " ¹"
                cells.append(cell)
        lines.append(f"| {PEER_LABELS[peer]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per peer and workload (median; default 3)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 run each, runs killed after 10 s")
    ap.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(w.key for w in WORKLOADS))
    ap.add_argument("--peers", default="", help="comma-separated peers (default: all)")
    ap.add_argument("--slow", type=float, default=5.0, help="a peer whose first run takes longer is run once")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a run is killed")
    ap.add_argument("--json", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.timeout = 1, 10.0
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only.split(",")]
    peers = [f"tilepool {m}" for m in MODES] + list(FLOORS) + list(PY_PEERS)
    if args.peers:
        peers = [p for p in peers if p in args.peers.split(",") or p.replace("tilepool ", "") in args.peers.split(",")]
    if "tilepool share" not in peers:
        peers.insert(0, "tilepool share")
    if not os.access(TILEPOOL, os.X_OK):
        sys.exit(f"compare_python.py: {TILEPOOL} is not built (scripts/build.sh release)")

    info = machine()
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tilepool-compare-") as directory:
        print(f"inputs in {directory}; {args.runs} run(s) each, {args.workers} workers", file=sys.stderr)
        make_inputs(directory, workloads)
        results, failures = run_all(workloads, peers, args, directory)
    load_after = os.getloadavg()

    cmdline = os.environ.get("COMPARE_COMMAND") or "scripts/compare_python.py " + " ".join(sys.argv[1:])
    print(f"### End to end against Python peers ({args.workers} workers, median of {args.runs} run(s), "
          "process start to exit)\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, Linux {info['kernel']}; "
          f"Python {info['python']}, numpy {info['numpy']}, joblib {info['joblib']}, dask {info['dask']}; "
          f"tilepool {info['tilepool_commit']}. Load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after; {time.time() - started:.0f} s in all. Command: `{cmdline.strip()}`.\n")
    print(table(workloads, peers, results, args))
    inexact = sorted({f"{w.key} / {p}" for (w_key, p), r in results.items() for w in workloads
                      if w.key == w_key and p != "phases" and r["times"] and not r["exact"]})
    print("\n(×) time relative to tilepool share mode on the same workload, same run. "
          f"¹ one run only: the first took longer than {args.slow:g} s. "
          "Every run's output was checked against numpy: "
          + ("all equal, bit for bit." if not inexact else "equal bit for bit except (allclose, rtol 1e-12): "
             + ", ".join(inexact) + "."))
    print("\nWhere share mode's time goes in each job (one more run per workload, with `--json`; "
          "the timed runs above do not measure memory):\n")
    print(phases_table(workloads, results))
    if failures:
        print("\n**Failures:**\n")
        for f in failures:
            print(f"- {f}")
    if args.json:
        data = {"machine": info, "command": cmdline.strip(), "runs": args.runs, "workers": args.workers,
                "load_average": [load_before[0], load_after[0]],
                "workloads": {w.key: {"title": w.title, "kernel": w.kernel, "shape": list(w.shape), "tile": w.tile,
                                      "peers": {p: results[(w.key, p)] for p in peers},
                                      "share_phases": results.get((w.key, "phases"))} for w in workloads}}
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
