"""Builds `netra.bench._counter` (cffi API mode) from counter.c; setup.py calls it at install.
Like the native fan-out it is optional: without it the viewer bots count in Python."""

from pathlib import Path

import cffi

HERE = Path(__file__).parent


def builder(root: Path = HERE) -> cffi.FFI:
    """`root`: where counter.c and counter.h are, as setup.py must name them (relative)."""
    ffi = cffi.FFI()
    ffi.cdef((HERE / "counter.h").read_text())
    ffi.set_source(
        "netra.bench._counter",
        '#include <stdint.h>\n#include "counter.h"\n',
        sources=[str(root / "counter.c")],
        include_dirs=[str(root)],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-pthread"],
        extra_link_args=["-pthread"],
    )
    return ffi
