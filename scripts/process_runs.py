"""Running a command as a measured process: end-to-end time, and the peak memory of its tree.

Used by compare_python.py and pattern_costs.py. A command runs in its own process group (its
workers stay in it: neither tilepool nor Python's pools make new groups), so "the command"
means the group: it is waited for until every member is gone, and its memory is the sum over
the group.
"""
import os
import signal
import subprocess
import threading
import time


def machine(root):
    """What the figures were measured on: CPU model, cores, RAM, kernel, and the tilepool commit
    at `root` ("+changes" when its tracked files differ from it)."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    with open("/proc/meminfo") as f:
        mem_kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(mem_kib / 2**20, 1),
            "kernel": os.uname().release, "tilepool_commit": commit.stdout.strip() + ("+changes" if dirty else "")}


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], pgid [2])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def group_members(pgid, min_pid=0):
    """Live pids of process group `pgid`. Pids below `min_pid` are not looked at (members of a
    group started after them have larger pids unless pids wrapped), which keeps a scan short."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) >= min_pid:
            try:
                fields = _stat_fields(entry)
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def _spawn(cmd, err_path):
    with open(err_path, "wb") as err:
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        return os.posix_spawn(cmd[0], cmd, os.environ, file_actions=actions, setpgroup=0)


def _kill_group(pgid):
    """SIGKILLs every member of the group but Python's resource trackers (multiprocessing's
    and loky's): once the processes they serve are gone, a tracker removes what those left
    registered (the named semaphores of spawned pools, SharedMemory blocks) and exits.
    Killing the tracker too would leave those in /dev/shm for good."""
    for member in group_members(pgid, pgid):
        try:
            with open(f"/proc/{member}/cmdline", "rb") as f:
                if b"resource_tracker" in f.read():
                    continue
            os.kill(member, signal.SIGKILL)
        except OSError:
            pass


def _reap_group(pid):
    """Waits (up to 30 s, then kills) until no member of the group is left, so stragglers of
    one run do not run into the next."""
    deadline = time.monotonic() + 30
    while group_members(pid, pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if group_members(pid, pid):
        os.killpg(pid, signal.SIGKILL)


def timed_run(cmd, timeout, err_path):
    """Runs cmd (stdout to /dev/null, stderr to err_path) in its own process group. Returns
    (seconds from posix_spawn to the command's exit, its pid, its exit code, or None if it was
    killed, group and all, after `timeout` seconds)."""
    t0 = time.perf_counter()
    pid = _spawn(cmd, err_path)
    killed = threading.Event()

    def kill():
        killed.set()
        _kill_group(pid)

    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - t0
    timer.cancel()
    _reap_group(pid)
    return seconds, pid, None if killed.is_set() else os.waitstatus_to_exitcode(status)


def _pss_bytes(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sampled_run(cmd, err_path, interval=0.0005):
    """Runs cmd like timed_run (no timeout) while sampling, every `interval` seconds, the
    proportional set size (PSS, /proc/PID/smaps_rollup) of every process of its group. Shared
    pages count once over the group, so the sum is what the command costs the machine.
    Returns (peak summed PSS in bytes, most processes seen at once, exit code). A sample takes
    about a millisecond (a scan of /proc, then one smaps_rollup per process), so a process or a
    peak shorter than that can be missed: the figure is a lower bound."""
    pid = _spawn(cmd, err_path)
    peak, most = 0, 0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        members = group_members(pid, pid)
        peak = max(peak, sum(_pss_bytes(m) for m in members))
        most = max(most, len(members))
        time.sleep(interval)
    _reap_group(pid)
    return peak, most, os.waitstatus_to_exitcode(status)
