"""The native extensions (src/netra/native_build.py); everything else is in pyproject.toml.

Both are optional: where they cannot be built (no compiler, no Python headers) the install
succeeds, Netra forwards in Python and the load tool's viewer bots count in Python.
"""

import importlib.util
from pathlib import Path

from setuptools import setup

spec = importlib.util.spec_from_file_location(
    "native_build", Path(__file__).parent / "src" / "netra" / "native_build.py"
)
assert spec is not None and spec.loader is not None
native_build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native_build)

extensions = []
for module in native_build.EXTENSIONS:
    extension = native_build.builder(module, Path("src")).distutils_extension(tmpdir="build/cffi")
    extension.optional = True
    extensions.append(extension)
setup(ext_modules=extensions)
