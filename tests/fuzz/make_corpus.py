#!/usr/bin/python3
"""Writes the seed corpus for npy_header_fuzz: valid NPY headers of several dtypes, shapes and
format versions, as numpy writes them, plus a few valid variants numpy's reader also accepts.

Run from anywhere: /usr/bin/python3 tests/fuzz/make_corpus.py (needs python3-numpy).
The files are committed; rerun only to change the seeds.
"""
import io
import os

import numpy as np
from numpy.lib import format as npformat

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def header(descr, fortran_order, shape, version):
    f = io.BytesIO()
    npformat._write_array_header(f, {"descr": descr, "fortran_order": fortran_order, "shape": shape}, version)
    return f.getvalue()


def raw(dict_text, version=(1, 0)):
    """A header with exactly this dict text (padded with spaces to 64 bytes, like numpy)."""
    fixed = 10 if version[0] == 1 else 12
    text = dict_text.encode("latin1")
    total = (fixed + len(text) + 1 + 63) // 64 * 64
    text = text + b" " * (total - fixed - len(text) - 1) + b"\n"
    size = len(text).to_bytes(2 if version[0] == 1 else 4, "little")
    return b"\x93NUMPY" + bytes(version) + size + text


def saved(array):
    """A whole small file, header and data, as np.save writes it."""
    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


SEEDS = {
    "f8-365x16x16-v1": header("<f8", False, (365, 16, 16), (1, 0)),
    "b1-0d-v1": header("|b1", False, (), (1, 0)),
    "u1-empty-v1": header("|u1", False, (0,), (1, 0)),
    "i1-3d-v1": header("|i1", False, (2, 3, 4), (1, 0)),
    "u2-1d-v2": header("<u2", False, (5,), (2, 0)),
    "be-i4-2d-v3": header(">i4", False, (2, 3), (3, 0)),
    "f4-fortran-one-long-axis-v1": header("<f4", True, (1, 7), (1, 0)),
    "i8-32-axes-v1": header("<i8", False, (1,) * 32, (1, 0)),
    "u8-huge-extent-v1": header("<u8", False, (2**40,), (1, 0)),
    "py2-longs-double-quotes": raw('{"descr": "<i2", "fortran_order": False, "shape": (3L, 4L)}'),
    "keys-reordered-no-trailing-comma": raw("{'shape': (6,), 'fortran_order': False, 'descr': '=u4'}"),
    "f8-file-v1": saved(np.arange(6, dtype=np.float64).reshape(2, 3)),
    # Refused, and their messages must stay inert: control bytes in the descr, a zero axis
    # that numpy's size rule does not let hide an overflow.
    "descr-ansi-escape-v1": raw("{'descr': '<f8\r\x1b[2J\xff', 'fortran_order': False, 'shape': (3,), }"),
    "zero-axis-overflow-v1": raw("{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 0, 4611686018427387904), }"),
}

os.makedirs(HERE, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(HERE, name + ".npy"), "wb") as out:
        out.write(data)
print(f"wrote {len(SEEDS)} seeds to {HERE}")
