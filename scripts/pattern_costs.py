#!/usr/bin/env python3
"""What each sharing pattern costs on the seed workload: time and memory, Python and C++.

Runs examples/seed_patterns/seed_patterns.py PATTERN and build/release/bin/example-seed_patterns
PATTERN (the seed job, out = a + b over (365, 16, 16) float64 in 16 tiles, 2 workers, done the
way PATTERN does it) as whole processes:
  time     from posix_spawn to exit, median of --runs runs (round-robin over the programs);
  memory   the peak of the summed PSS of every process of the run (parent, workers, trackers),
           sampled about every millisecond in --memory-runs separate runs: the highest peak
           seen (a lower bound: a peak shorter than a sample can be missed), and the most
           processes seen at once.
Every run must exit 0 (each program checks its own output against a + b) and leave nothing in
/dev/shm. Prints a markdown table naming the machine.

Usage: pattern_costs.py [--runs N] [--memory-runs M] [--json PATH]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import process_runs  # noqa: E402
from process_runs import sampled_run, timed_run  # noqa: E402

PYTHON = "/usr/bin/python3"
CPP = os.path.join(ROOT, "build", "release", "bin", "example-seed_patterns")
SCRIPT = os.path.join(ROOT, "examples", "seed_patterns", "seed_patterns.py")
PATTERNS = [  # (name, what the Python program does, what the C++ twin does)
    ("mp_array_lock", "`mp.Array` ×3, forked workers, `out`'s lock per tile",
     "segment with `interprocess_mutex`, forked workers"),
    ("raw_array", "`mp.RawArray` ×3, forked workers", "3 `ArraySegment`s, forked workers"),
    ("pool_initializer", "`SharedMemory` ×3, spawn `Pool(initializer=)`, tile indices",
     "tilepool `Pool`, share mode"),
    ("fork_cow", "private inputs, fork, `out` in `mmap(-1)`", "private inputs, `fork()`, `out` `MAP_SHARED`"),
    ("shared_memory_manager", "`SharedMemoryManager`, 2 spawned workers attach by name",
     "`ArraySegment`s in a scope, 2 spawned workers attach by name"),
    ("sharedarray_create_attach", "NPY files in `/dev/shm`, 2 other programs attach by name",
     "released named segments, 2 other programs attach by name"),
    ("pool_map_slices", "fork `Pool.starmap` over slices (pickled there and back)", "tilepool `Pool`, copy mode"),
    ("one_process", "numpy in one process (no workers)", "Eigen in one process (no workers)"),
]
LANGUAGES = {"Python": lambda p: [PYTHON, SCRIPT, p], "C++": lambda p: [CPP, p]}


def machine():
    return process_runs.machine(ROOT)


def leftovers(pid):
    return [e for e in os.listdir("/dev/shm") if e.startswith((f"tpex-{pid}-", f"tilepool-{pid}-"))]


def fail(what, err_path, status):
    with open(err_path, errors="replace") as f:
        sys.exit(f"pattern_costs.py: {what} failed (exit status {status}): {f.read().strip()[-500:]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per program (median; default 5)")
    ap.add_argument("--memory-runs", type=int, default=5, help="sampled runs per program (default 5)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not os.access(CPP, os.X_OK):
        sys.exit(f"pattern_costs.py: {CPP} is not built (scripts/build.sh release)")

    info = machine()
    load_before = os.getloadavg()[0]
    started = time.time()
    times = {(p, lang): [] for p, _, _ in PATTERNS for lang in LANGUAGES}
    memory = {(p, lang): [] for p, _, _ in PATTERNS for lang in LANGUAGES}
    with tempfile.TemporaryDirectory() as directory:
        err = os.path.join(directory, "stderr.txt")
        for run in range(args.runs + args.memory_runs):
            for (pattern, _, _), (lang, command) in ((p, l) for p in PATTERNS for l in LANGUAGES.items()):
                what = f"{lang} {pattern}"
                if run < args.runs:
                    seconds, pid, status = timed_run(command(pattern), 60, err)
                    times[(pattern, lang)].append(seconds)
                    print(f"  {what:34} run {run + 1}: {seconds * 1e3:8.1f} ms", file=sys.stderr)
                    if left := leftovers(pid):
                        sys.exit(f"pattern_costs.py: {what} left {left} in /dev/shm")
                else:
                    pss, processes, status = sampled_run(command(pattern), err)
                    memory[(pattern, lang)].append((pss, processes))
                    print(f"  {what:34} peak PSS {pss / 2**20:6.1f} MiB, {processes} processes", file=sys.stderr)
                if status != 0:
                    fail(what, err, status)

    def cells(pattern, lang):
        med = statistics.median(times[(pattern, lang)]) * 1e3
        pss = max(m[0] for m in memory[(pattern, lang)]) / 2**20
        processes = max(m[1] for m in memory[(pattern, lang)])
        return [f"{med:.0f} ms" if med >= 100 else f"{med:.1f} ms", f"{pss:.1f} MiB", str(processes)]

    cmdline = os.environ.get("PATTERN_COSTS_COMMAND") or "scripts/pattern_costs.py " + " ".join(sys.argv[1:])
    print(f"Seed workload ((365, 16, 16) float64 `add`, 16 tiles, 2 workers) done by each pattern, whole "
          f"process: time is the median of {args.runs} runs from start to exit; memory is the peak of the "
          f"summed PSS of all the run's processes (sampled about every millisecond; the highest of "
          f"{args.memory_runs} runs; a lower bound), with the most processes seen at once.\n")
    print(f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, Linux {info['kernel']}; "
          f"tilepool {info['tilepool_commit']}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {time.time() - started:.0f} s in all. Command: `{cmdline.strip()}`.\n")
    print("| pattern | Python: what it does | time | memory | processes | C++ twin | time | memory | processes |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for pattern, py_what, cpp_what in PATTERNS:
        print(f"| `{pattern}` | {py_what} | " + " | ".join(cells(pattern, "Python")) + f" | {cpp_what} | "
              + " | ".join(cells(pattern, "C++")) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "command": cmdline.strip(),
                       "results": {f"{lang} {p}": {"times_s": times[(p, lang)], "memory": memory[(p, lang)]}
                                   for p, _, _ in PATTERNS for lang in LANGUAGES}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
