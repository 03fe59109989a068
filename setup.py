"""The native extensions; everything else is in pyproject.toml.

Both are optional: where they cannot be built (no compiler, no Python headers) the install
succeeds, Netra forwards in Python (netra.media.fanout) and the load tool's viewer bots count
in Python (netra.bench.counter).
"""

import importlib.util
from pathlib import Path

from setuptools import setup


def extension(module: str, directory: str):  # noqa: ANN201
    path = Path(__file__).parent / directory / f"{module}_build.py"
    spec = importlib.util.spec_from_file_location(f"{module}_build", path)
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    made = builder.builder(Path(directory)).distutils_extension(tmpdir="build/cffi")
    made.optional = True
    return made


setup(
    ext_modules=[
        extension("fanout", "src/netra/media"),
        extension("counter", "src/netra/bench"),
    ]
)
