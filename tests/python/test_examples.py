# examples/python/seed.py: the seed workload with multiprocessing and with tilepool prints the
# same result line twice, right, and leaves nothing in /dev/shm.
import os
import subprocess
import sys

from conftest import SOURCE_DIR


def test_the_seed_example_prints_the_same_right_result_both_ways():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), SEED_REPEATS="5")
    r = subprocess.run([sys.executable, os.path.join(SOURCE_DIR, "examples", "python", "seed.py")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    results = [line for line in r.stdout.splitlines() if line.startswith("result:")]
    assert len(results) == 2 and results[0] == results[1] and results[0].endswith("right=yes"), r.stdout
    assert "resource_tracker" not in r.stderr
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("seed-")]
