#!/usr/bin/python3
"""Plots tilepool-bench's JSON and prints the key ratios as a markdown table.

Usage: scripts/plot_bench.py bench-out/bench.json [--out DIR ...]

Draws, into every --out directory (default: bench-out):
  modes_time_vs_size.png   time per mode vs array size (add, 256x256 tiles)
  modes_tile_overhead.png  time per tile vs tile count (add over 4096x4096 float64)
  modes_memory.png         peak PSS (parent + workers) per mode vs workers
and prints the machine, the ratios that the targets are about, and a per-mode summary.
Benchmark names: BM_<Mode>/<kernel>/<workload>/<arg:value>.../real_time (see modes_bench.cpp).
"""
import argparse
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ["Share", "Fork", "Copy", "Threads"]
COLORS = {"Share": "tab:blue", "Fork": "tab:orange", "Copy": "tab:red", "Threads": "tab:green", "PlainLoop": "black"}
MiB = 1024.0 * 1024.0


def parse_name(name):
    """'BM_Share/add/tiles/edge:256/workers:2/real_time' -> ('Share', 'add', 'tiles', {'edge': 256, 'workers': 2})."""
    parts = [p for p in name.split("/") if p != "real_time"]
    mode = parts[0][3:] if parts[0].startswith("BM_") else parts[0]
    kernel = parts[1] if len(parts) > 1 else ""
    workload = ""
    args = {}
    for p in parts[2:]:
        m = re.fullmatch(r"(\w+):(\d+)", p)
        if m:
            args[m.group(1)] = int(m.group(2))
        else:
            workload = p
    return mode, kernel, workload, args


def load(path):
    with open(path) as f:
        data = json.load(f)
    # With repetitions, use the median aggregate; otherwise the single run.
    runs = {}
    medians = {}
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[b["run_name"]] = b
            continue
        runs.setdefault(b.get("run_name", b["name"]), []).append(b)
    table = {}
    for name, bs in runs.items():
        b = medians.get(name)
        if b is None:
            b = dict(bs[0])
            if len(bs) > 1:
                b["real_time"] = statistics.median(x["real_time"] for x in bs)
        table[name] = b
    return data.get("context", {}), table


def seconds(b):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def find(table, mode, kernel, workload, **args):
    for name, b in table.items():
        m, k, w, a = parse_name(name)
        if m == mode and k == kernel and w == workload and all(a.get(key) == v for key, v in args.items()):
            return b
    return None


def series(table, mode, kernel, workload, x_arg, **fixed):
    points = []
    for name, b in table.items():
        m, k, w, a = parse_name(name)
        if m == mode and k == kernel and w == workload and x_arg in a and all(a.get(key) == v for key, v in fixed.items()):
            points.append((a[x_arg], b))
    return sorted(points, key=lambda p: p[0])


def save(fig, name, outs):
    for d in outs:
        os.makedirs(d, exist_ok=True)
        fig.savefig(os.path.join(d, name), dpi=110, bbox_inches="tight")
    plt.close(fig)


def memory_text(ctx):
    m = re.match(r"(\d+)\s*kB", ctx.get("mem_total", ""))
    return "{:.1f} GiB".format(int(m.group(1)) / 1048576.0) if m else ctx.get("mem_total", "?")


def machine_line(ctx):
    return "{} x {} ({}), {} RAM".format(ctx.get("nproc", "?"), ctx.get("cpu_model", "?"), ctx.get("host_name", "?"),
                                         memory_text(ctx))


def hc_workers(ctx):
    try:
        return int(ctx.get("nproc", ctx.get("num_cpus", 1)))
    except ValueError:
        return 1


def plot_time_vs_size(table, ctx, outs):
    w = hc_workers(ctx)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in MODES:
        pts = series(table, mode, "add", "size", "MiB", workers=w)
        if pts:
            ax.plot([p[0] for p in pts], [seconds(p[1]) * 1e3 for p in pts], "o-", color=COLORS[mode], label=mode.lower())
    plain = find(table, "PlainLoop", "add", "tiles")
    if plain:
        ax.plot([plain["array_bytes"] / MiB], [seconds(plain) * 1e3], "k*", markersize=12, label="plain loop (1 thread)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("array size (MiB per array; c = a + b, float64, 256x256 tiles)")
    ax.set_ylabel("time per job (ms)")
    ax.set_title("tilepool add: time per mode vs array size ({} workers)".format(w))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, -0.02, machine_line(ctx), fontsize=7)
    save(fig, "modes_time_vs_size.png", outs)


def plot_tile_overhead(table, ctx, outs):
    w = hc_workers(ctx)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    side = 4096
    for mode in MODES:
        pts = series(table, mode, "add", "tiles", "edge", workers=w)
        if pts:
            counts = [(side // e) ** 2 for e, _ in pts]
            per_tile_us = [seconds(b) * 1e6 / c for (e, b), c in zip(pts, counts)]
            order = sorted(range(len(counts)), key=lambda i: counts[i])
            ax.plot([counts[i] for i in order], [per_tile_us[i] for i in order], "o-", color=COLORS[mode], label=mode.lower())
    plain = find(table, "PlainLoop", "add", "tiles")
    if plain:
        xs = [16, 65536]
        ax.plot(xs, [seconds(plain) * 1e6 / x for x in xs], "k--", label="plain loop time / tiles")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tiles per job (4096x4096 float64 add; edge 1024 ... 16)")
    ax.set_ylabel("time per tile (us)")
    ax.set_title("per-tile cost vs tile count ({} workers)".format(w))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, -0.02, machine_line(ctx), fontsize=7)
    save(fig, "modes_tile_overhead.png", outs)


def plot_memory(table, ctx, outs):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    workers = sorted({parse_name(n)[3].get("workers") for n in table
                      if parse_name(n)[1:3] == ("add", "tiles") and parse_name(n)[3].get("edge") == 256} - {None})
    width = 0.8 / len(MODES)
    for i, mode in enumerate(MODES):
        xs, ys = [], []
        for j, w in enumerate(workers):
            b = find(table, mode, "add", "tiles", edge=256, workers=w)
            if b and "peak_pss_bytes" in b:
                xs.append(j + (i - (len(MODES) - 1) / 2) * width)
                ys.append(b["peak_pss_bytes"] / MiB)
        if xs:
            ax.bar(xs, ys, width, color=COLORS[mode], label=mode.lower())
    ax.axhline(3 * 128, color="gray", linestyle=":", label="a, b, c once (384 MiB)")
    ax.set_xticks(range(len(workers)))
    ax.set_xticklabels([str(w) for w in workers])
    ax.set_xlabel("workers")
    ax.set_ylabel("peak PSS, parent + workers (MiB)")
    ax.set_title("memory per mode: 4096x4096 float64 add (3 x 128 MiB)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.grid(True, axis="y", alpha=0.3)
    fig.text(0.01, -0.02, machine_line(ctx), fontsize=7)
    save(fig, "modes_memory.png", outs)


def ratio_row(label, num, den, target, better="lower", fmt="{:.2f}x"):
    if num is None or den is None or den == 0:
        return "| {} | n/a | {} | not measured |".format(label, target)
    r = num / den
    ok = r <= target[1] if better == "lower" else r >= target[1]
    return "| {} | {} | {} | {} |".format(label, fmt.format(r), target[0], "met" if ok else "missed")


def report(table, ctx):
    w = hc_workers(ctx)
    out = []
    out.append("Machine: {} CPUs, {}, {} RAM; benchmark set: {}; {} workers unless noted; medians of repetitions "
               "where there are several.".format(ctx.get("nproc", "?"), ctx.get("cpu_model", "?"), memory_text(ctx),
                                                  ctx.get("tilepool_set", "?"), w))
    out.append("")
    out.append("| ratio | measured | target | |")
    out.append("| --- | --- | --- | --- |")

    def time_of(mode, edge):
        b = find(table, mode, "add", "tiles", edge=edge, workers=w)
        return seconds(b) if b else None

    def compute_of(mode, edge):
        b = find(table, mode, "add", "tiles", edge=edge, workers=w)
        return b.get("compute_s") if b else None

    out.append(ratio_row("share / threads, 4096² add, 256² tiles (wall per job)", time_of("Share", 256), time_of("Threads", 256),
                         ("≤ 1.10x", 1.10)))
    out.append(ratio_row("share / threads, 4096² add, 65,536 16² tiles (wall per job)", time_of("Share", 16),
                         time_of("Threads", 16), ("≤ 1.25x", 1.25)))
    share = find(table, "Share", "add", "tiles", edge=256, workers=w)
    plain = find(table, "PlainLoop", "add", "tiles")
    out.append(ratio_row("share add bandwidth / plain-loop bandwidth (256² tiles)",
                         share["bytes_per_second"] if share else None, plain["bytes_per_second"] if plain else None,
                         ("≥ 80%", 0.80), better="higher", fmt="{:.0%}"))
    share_rows = find(table, "Share", "add", "rows", workers=w)
    out.append(ratio_row("share add bandwidth / plain-loop bandwidth (64-row tiles, contiguous)",
                         share_rows["bytes_per_second"] if share_rows else None,
                         plain["bytes_per_second"] if plain else None, ("≥ 80%", 0.80), better="higher", fmt="{:.0%}"))
    out.append(ratio_row("share / threads compute_s, 256² tiles", compute_of("Share", 256), compute_of("Threads", 256),
                         ("≤ 1.10x", 1.10)))
    out.append(ratio_row("share / threads compute_s, 16² tiles", compute_of("Share", 16), compute_of("Threads", 16),
                         ("≤ 1.25x", 1.25)))
    # Threads mode as a fair baseline: warm, within 1.1x of share at every tile size.
    for edge in sorted({parse_name(n)[3].get("edge") for n in table if parse_name(n)[1:3] == ("add", "tiles")} - {None},
                       reverse=True):
        if time_of("Threads", edge) and time_of("Share", edge):
            out.append(ratio_row("threads / share, 4096² add, {}² tiles (wall per job, warm)".format(edge),
                                 time_of("Threads", edge), time_of("Share", edge), ("≤ 1.10x", 1.10)))
    # Dispatch alone: the noop kernel (no memory traffic), per tile and 2 workers against 1.
    for edge in (16, 4):
        one = find(table, "Share", "noop", "tiles", edge=edge, workers=1)
        two = find(table, "Share", "noop", "tiles", edge=edge, workers=2)
        tiles = (4096 // edge) ** 2
        out.append(ratio_row("share dispatch per tile, {:,} tiles, 1 worker (noop kernel)".format(tiles),
                             seconds(one) * 1e9 / tiles if one else None, 1.0, ("≤ 100 ns", 100.0), fmt="{:.0f} ns"))
        out.append(ratio_row("share 1 worker / 2 workers, {:,} tiles (noop kernel: dispatch scaling)".format(tiles),
                             seconds(one) if one else None, seconds(two) if two else None, ("≥ 1.7x", 1.7),
                             better="higher"))
    one = find(table, "Share", "add", "tiles", edge=16, workers=1)
    two = find(table, "Share", "add", "tiles", edge=16, workers=2)
    out.append(ratio_row("share add 1 worker / 2 workers, 16² tiles (compute; memory-bound, see the plain loop)",
                         one.get("compute_s") if one else None, two.get("compute_s") if two else None,
                         ("≥ 1.7x", 1.7), better="higher"))
    out.append("")
    out.append("Per mode, 4096² float64 add ({} workers): wall time per job, bandwidth, tiles/s, bytes over pipes, peak PSS".format(w))
    out.append("")
    out.append("| mode | tiles | time (ms) | GB/s | tiles/s | bytes copied | peak PSS (MiB) |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for workload, args in (("tiles", {"edge": 256}), ("tiles", {"edge": 16}), ("rows", {"rows": 64})):
        for mode in MODES:
            b = find(table, mode, "add", workload, workers=w, **args)
            if not b:
                continue
            out.append("| {} | {} | {:.1f} | {:.2f} | {:,.0f} | {:,.0f} | {:.0f} |".format(
                mode.lower(), int(b.get("tiles", 0)), seconds(b) * 1e3, b.get("bytes_per_second", 0) / 1e9,
                b.get("tiles_per_s", 0), b.get("bytes_copied", 0), b.get("peak_pss_bytes", 0) / MiB))
    if plain:
        out.append("| plain loop (1 thread) | - | {:.1f} | {:.2f} | - | 0 | - |".format(seconds(plain) * 1e3,
                                                                                     plain["bytes_per_second"] / 1e9))
    starts = [(m, find(table, "PoolStart", m.lower(), "", workers=w)) for m in MODES]
    starts = [(m, b) for m, b in starts if b]
    if starts:
        out.append("")
        out.append("Pool start-up ({} workers): ".format(w) + ", ".join(
            "{} {:.1f} ms".format(m.lower(), seconds(b) * 1e3) for m, b in starts) +
            " (fork mode forks per job: see fork_s in its runs)")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--out", action="append", help="directory for the PNGs (repeatable; default bench-out)")
    a = ap.parse_args()
    outs = a.out or ["bench-out"]
    ctx, table = load(a.json)
    if not table:
        sys.exit("plot_bench.py: no successful benchmark in " + a.json)
    plot_time_vs_size(table, ctx, outs)
    plot_tile_overhead(table, ctx, outs)
    plot_memory(table, ctx, outs)
    print(report(table, ctx))
    print("")
    print("Figures: " + ", ".join(os.path.join(outs[0], n) for n in
                                  ("modes_time_vs_size.png", "modes_tile_overhead.png", "modes_memory.png")))


if __name__ == "__main__":
    main()
