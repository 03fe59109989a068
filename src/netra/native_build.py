"""Builds Netra's two optional C extensions (cffi API mode); setup.py calls it at install.

- `netra.media._fanout` (media/fanout.c): the per-viewer forwarding step, see media/fanout.py;
- `netra.bench._counter` (bench/counter.c): the load tool's receive thread, see bench/counter.py.

API mode rather than ABI mode: a call costs 0.42 µs instead of 0.72 (fan-out-floor.md). It
needs a C compiler and Python's headers, which `make install` installs; without them the
install goes on, Netra forwards in Python and the viewer bots count in Python.
"""

from pathlib import Path

import cffi

EXTENSIONS = {  # module: (directory under src/, C name)
    "netra.media._fanout": ("netra/media", "fanout"),
    "netra.bench._counter": ("netra/bench", "counter"),
}


def builder(module: str, src: Path) -> cffi.FFI:
    """`src`: the source root as setup.py must name it (a relative path)."""
    directory, name = EXTENSIONS[module]
    where = src / directory
    ffi = cffi.FFI()
    ffi.cdef((Path(__file__).parent.parent / directory / f"{name}.h").read_text())
    ffi.set_source(
        module,
        f'#include <stdint.h>\n#include "{name}.h"\n',
        sources=[str(where / f"{name}.c")],
        include_dirs=[str(where)],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-pthread"],
        extra_link_args=["-pthread"],
    )
    return ffi
