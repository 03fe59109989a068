"""Builds `netra.media._fanout` (cffi API mode) from fanout.c; setup.py calls it at install.

API mode rather than ABI mode: a call costs 0.42 us instead of 0.72 (fan-out-floor.md), and
there is one call per packet and group. It needs a C compiler and Python's headers, which
`make install` installs; without them the install goes on and Netra forwards in Python.
"""

from pathlib import Path

import cffi

HERE = Path(__file__).parent


def builder(root: Path = HERE) -> cffi.FFI:
    """`root`: where fanout.c and fanout.h are, as setup.py must name them (relative)."""
    ffi = cffi.FFI()
    ffi.cdef((HERE / "fanout.h").read_text())
    ffi.set_source(
        "netra.media._fanout",
        '#include <stdint.h>\n#include "fanout.h"\n',
        sources=[str(root / "fanout.c")],
        include_dirs=[str(root)],
        extra_compile_args=["-O2", "-Wall", "-Wextra"],
    )
    return ffi
