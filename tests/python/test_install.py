# The package imported from an install in a temporary prefix: `cmake --install` puts it under
# <prefix>/lib/python3/dist-packages/tilepool, and it finds tilepool-worker and the libraries
# relative to itself.
import os
import shutil
import subprocess
import sys

import pytest

from conftest import BUILD_DIR


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake")
def test_the_installed_package_imports_and_runs_a_share_job(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True, capture_output=True)
    site = prefix / "lib" / "python3" / "dist-packages"
    assert (site / "tilepool" / "__init__.py").exists()
    code = (
        "import numpy as np, tilepool as tp, os\n"
        "assert tp.__file__.startswith(os.environ['PREFIX']), tp.__file__\n"
        "with tp.Pool(workers=2) as p:\n"
        "    out = p.run('add', np.ones((365, 16, 16)), np.ones((365, 16, 16)), tile=(4, 4))\n"
        "    assert (out == 2).all()\n"
        "    print('ok', p.mode)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TILEPOOL_WORKER", "LD_LIBRARY_PATH")}
    env.update(PYTHONPATH=str(site), PREFIX=str(prefix))
    # From another folder, so nothing is found beside the build tree or the current directory.
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok share"
