"""The optional compiled accelerator (rmqnode/csrc/); everything else is in pyproject.toml.

`optional=True`: where the extension cannot be built (no compiler, no Python headers) the
build says so and goes on, and rmqnode runs on its pure-Python code (rmqnode/speedups.py).
"""

from glob import glob

from setuptools import Extension, setup

setup(ext_modules=[Extension("rmqnode._speedups", sorted(glob("rmqnode/csrc/*.c")),
                             depends=["rmqnode/csrc/speedups.h"], optional=True)])
