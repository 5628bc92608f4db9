#!/bin/sh
# Separate "nodes" on one machine for tilepool-mpi's tests (root only).
#
# A node is a long-lived process (the node's pid 1) in its own mount, UTS and pid namespaces:
# its own hostname, its own tmpfs on /dev/shm and /tmp, its own /proc, and one directory of
# the machine (the "shared filesystem") bind-mounted at the same path. mpirun reaches the nodes
# through its remote-shell agent (this script's `agent`), which starts orted inside the named
# node's namespaces with a clean environment, as ssh would. The network namespace is the
# machine's: orted and the ranks talk TCP over the loopback interface.
#
#   fake_nodes.sh up STATE SHARED NAME...   start the nodes (STATE: a directory for this script);
#                                           with FAKE_NODES_OWNER_LOCK=FILE, the nodes end
#                                           themselves once nobody holds flock(FILE) (the test
#                                           process that holds it died without `down`)
#   fake_nodes.sh exec STATE NAME CMD...    run CMD (through sh -c) inside a node
#   fake_nodes.sh down STATE                stop every node: its processes, mounts and segments go
#   TILEPOOL_FAKE_NODES=STATE mpirun --mca plm_rsh_agent "fake_nodes.sh agent" ...
#
# Nodes persist across mpirun runs (as real nodes do): what a killed run leaves in a node's
# /dev/shm or /tmp stays there for the next run or `tilepool gc` to find, under the same pids.
set -eu

cmd=${1:?usage: fake_nodes.sh up|exec|down|agent ...}
shift

node_pid() {  # the host pid of node $2's pid 1
  cat "$1/$2.pid"
}

case $cmd in
  up)
    state=$1 shared=$2
    shift 2
    mkdir -p "$state"
    for name in "$@"; do
      # --kill-child: when `down` stops unshare, the node's pid 1 dies, and with it every process
      # of the node and its mount namespace (the tmpfs mounts vanish with it).
      unshare --mount --uts --pid --fork --kill-child --mount-proc --propagation private sh -c '
        set -e
        exec 4>"$3.ready"  # opened now: STATE may be under /tmp, which the node hides
        hostname "$1"
        mount -t tmpfs -o mode=1777,size=256m tpnode-shm /dev/shm
        exec 3<"$2"
        exec 5<"${4:-/dev/null}"  # the owner'"'"'s lock, opened while /tmp is still the machine'"'"'s
        mount -t tmpfs -o mode=1777,size=256m tpnode-tmp /tmp
        mkdir -p "$2"
        mount --no-canonicalize --bind /proc/self/fd/3 "$2"
        exec 3<&-
        echo ok >&4
        exec 4>&-
        # The node'"'"'s init: reaps orphans (a zombie'"'"'s pid looks alive to the sweeps that test pids).
        # It ends the node when the owner lock (fd 5) is free: the owner died.
        exec /usr/bin/python3 -c "
import fcntl, os, sys, time
owned = len(sys.argv[1]) > 0
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    if owned:
        try:
            fcntl.flock(5, fcntl.LOCK_EX | fcntl.LOCK_NB)
            sys.exit(0)
        except BlockingIOError:
            pass
    time.sleep(0.2)
" "${4:-}"' sh "$name" "$shared" "$state/$name" "${FAKE_NODES_OWNER_LOCK:-}" </dev/null >/dev/null 2>"$state/$name.log" &
      echo $! > "$state/$name.unshare"
    done
    for name in "$@"; do
      i=0
      while [ ! -s "$state/$name.ready" ]; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
          echo "fake_nodes.sh: node $name did not start: $(cat "$state/$name.log")" >&2
          exit 1
        fi
        sleep 0.05
      done
      child=$(cat "/proc/$(cat "$state/$name.unshare")/task/$(cat "$state/$name.unshare")/children")
      echo "${child%% *}" > "$state/$name.pid"
    done
    ;;
  exec)
    state=$1 name=$2
    shift 2
    exec nsenter -t "$(node_pid "$state" "$name")" --mount --uts --pid -- sh -c "$*"
    ;;
  agent)
    # mpirun calls: agent HOST WORD... (the words are a command line for the remote shell).
    # As with ssh, mpirun has put this agent in a process group of its own (setpgid in Open
    # MPI's rsh launcher): Ctrl-C at mpirun's terminal reaches neither the agent nor the orted it
    # starts, which stays in that group (nsenter forks it and waits, as ssh's session stays up).
    state=${TILEPOOL_FAKE_NODES:?TILEPOOL_FAKE_NODES names the nodes state directory}
    name=$1
    shift
    exec nsenter -t "$(node_pid "$state" "$name")" --mount --uts --pid --wd=/ -- \
      env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root sh -c "$*"
    ;;
  down)
    state=$1
    for f in "$state"/*.unshare; do
      [ -e "$f" ] || continue
      pid=$(cat "$f")
      # unshare ignores SIGTERM while it waits; the node's pid 1 dying takes the whole node
      # (every process in its pid namespace, then its mounts) and then unshare with it.
      if [ -s "${f%.unshare}.pid" ]; then kill -KILL "$(cat "${f%.unshare}.pid")" 2>/dev/null || true; fi
      kill "$pid" 2>/dev/null || true
      i=0
      # Gone, or a zombie that whoever adopted unshare reaps in its own time.
      while [ -e "/proc/$pid" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.05
      done
      rm -f "$f" "${f%.unshare}.pid" "${f%.unshare}.ready" "${f%.unshare}.log"
    done
    ;;
  *)
    echo "fake_nodes.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
