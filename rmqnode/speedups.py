"""The compiled accelerator (rmqnode/csrc/), chosen at import, the pure-Python code the
fallback.

The extension is built by `pip install` where a C compiler is found, and skipped where not
(setup.py: optional): rmqnode runs the same either way. RMQNODE_PURE=1 in the environment
forces the pure-Python code, so tests and benchmarks can compare both in one checkout.

Each compiled function is a twin of a pure-Python one with the same arguments and results: it
does the common, well-formed case in C and hands anything unusual (a malformed frame, a value
of an unexpected type) to the original, so every error is raised by one definition of it.
"""

from __future__ import annotations

import os
import types
from typing import Callable, TypeVar

try:
    from rmqnode import _speedups as native
except ImportError:  # not built: no compiler where rmqnode was installed
    native = None

F = TypeVar("F", bound=Callable)

ENABLED = native is not None and os.environ.get("RMQNODE_PURE", "") in ("", "0")
# Both implementations of each accelerated function by name, for the test that compares them.
PURE: dict[str, Callable] = {}
NATIVE: dict[str, Callable] = {}


def accelerate(pure: F, **helpers: object) -> F:
    """The compiled twin of `pure` when the extension is built and not disabled, else `pure`.

    `helpers` are the Python objects the twin builds its results from (the result classes,
    lookup tables); they are given to the extension even when it is disabled, so the test can
    run the twin beside the original."""
    name = pure.__name__
    PURE[name] = pure
    if native is None:
        return pure
    native.bind(name, pure)
    for key, value in helpers.items():
        native.bind(key, value)
    NATIVE[name] = getattr(native, name)
    return NATIVE[name] if ENABLED else pure  # type: ignore[return-value]


def method(fn: F) -> F:
    """`fn`, a twin whose first argument is the instance, as a method of a class: a compiled
    function does not bind to an instance by itself (it is no descriptor), so it is wrapped
    in the C API's instancemethod, which does; a pure one binds already."""
    if native is not None and not isinstance(fn, types.FunctionType):
        return native.instancemethod(fn)
    return fn
