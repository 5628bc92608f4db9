"""multiprocessing.Array('d', n) with its lock: processes add into shared counters.

mp.Array('d', 4096) is 4096 doubles in shared memory (an anonymous mapping that forked children
inherit) plus a lock, arr.get_lock(). Four processes add 1 to every counter, ROUNDS times
each, three ways:

- under the lock, once per update: correct, and every update pays for the lock;
- without the lock: wrong (updates are lost when two processes interleave their
  read-modify-writes);
- adding into a private array and taking the lock once at the end: correct and cheap.

Then a process dies while it holds the lock (SIGKILL, half-way through an update). The lock
is a semaphore that only its holder may release, so it stays taken forever: every later
acquire() would wait forever (we give up after a timeout), and the half-done update can never
be repaired under the lock. The C++ twin uses a robust mutex, which hands the lock to the next
process with the news that its owner died.

C++ twin: main.cpp. Run: /usr/bin/python3 examples/mp_array_lock/mp_array_lock.py
"""
import multiprocessing as mp
import signal
import time

import numpy as np

PROCESSES = 4
ROUNDS = 2000
COUNTERS = 4096
TIMEOUT_S = 1.0  # how long the survivors try to take the dead process's lock


def add_locked(arr):
    counters = np.frombuffer(arr.get_obj())  # a numpy view of the shared doubles, no copy
    for _ in range(ROUNDS):
        with arr.get_lock():
            counters += 1.0


def add_unlocked(arr):
    # numpy reads each counter, adds one and writes it back; another process may have written
    # in between, and its update is then lost.
    counters = np.frombuffer(arr.get_obj())
    for _ in range(ROUNDS):
        counters += 1.0


def add_batched(arr):
    # Work in private memory, then take the lock once to publish.
    local = np.zeros(COUNTERS)
    for _ in range(ROUNDS):
        local += 1.0
    with arr.get_lock():
        np.frombuffer(arr.get_obj())[:] += local


def child(add, arr, start_line, seconds, index):
    start_line.wait()  # nobody starts before everybody is there
    t0 = time.perf_counter()
    add(arr)
    seconds[index] = time.perf_counter() - t0


def run(ctx, add):
    """Runs `add` in PROCESSES forked children from a common start; returns (total, slowest ms)."""
    arr = ctx.Array("d", COUNTERS)  # zero-filled doubles + arr.get_lock()
    start_line = ctx.Barrier(PROCESSES)
    seconds = ctx.RawArray("d", PROCESSES)
    procs = [ctx.Process(target=child, args=(add, arr, start_line, seconds, i)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit("a child failed")
    return sum(arr.get_obj()), 1e3 * max(seconds)


def die_holding_lock(arr, holding):
    """Takes the lock, does half of one update, and waits there to be killed."""
    arr.get_lock().acquire()
    np.frombuffer(arr.get_obj())[: COUNTERS // 2] += 1.0
    holding.set()
    time.sleep(60)


def kill_lock_holder(ctx):
    """A child dies (SIGKILL) holding the lock; returns (acquired?, half-updated counters, signal)."""
    arr = ctx.Array("d", COUNTERS)
    holding = ctx.Event()
    doomed = ctx.Process(target=die_holding_lock, args=(arr, holding))
    doomed.start()
    holding.wait()
    doomed.kill()  # SIGKILL: no finally, no atexit, no chance to release anything
    doomed.join()
    acquired = arr.get_lock().acquire(timeout=TIMEOUT_S)  # without a timeout: forever
    half_done = int(np.count_nonzero(np.frombuffer(arr.get_obj())))
    return acquired, half_done, -doomed.exitcode


def main():
    ctx = mp.get_context("fork")  # children inherit the array, as on Linux by default
    expected = PROCESSES * ROUNDS * COUNTERS
    locked, locked_ms = run(ctx, add_locked)
    unlocked, unlocked_ms = run(ctx, add_unlocked)
    batched, batched_ms = run(ctx, add_batched)
    print(f"lock per update:      {locked:8.0f} of {expected} updates kept, slowest process {locked_ms:6.2f} ms")
    print(f"no lock:              {unlocked:8.0f} of {expected} updates kept, slowest process {unlocked_ms:6.2f} ms"
          f"  ({expected - unlocked:.0f} lost: varies from run to run, 0 if the processes did not overlap)")
    print(f"one lock per process: {batched:8.0f} of {expected} updates kept, slowest process {batched_ms:6.2f} ms")
    acquired, half_done, sig = kill_lock_holder(ctx)
    print(f"owner died: a child holding the lock was killed by {signal.Signals(sig).name} half-way through an update; "
          f"acquire(timeout={TIMEOUT_S:g}) -> {acquired}: the lock stays taken forever, and the {half_done} of "
          f"{COUNTERS} counters it half-updated cannot be repaired under it")
    print(f"result: {PROCESSES} processes x {ROUNDS} rounds x {COUNTERS} counters: "
          f"locked total={locked:.0f} batched total={batched:.0f} expected={expected}")
    return 0 if locked == expected and batched == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
