"""Config files written so that a crash at any instant leaves a readable copy.

RocketMQ keeps `<file>` and `<file>.bak` (MixAll.string2File) and loads the .bak when the main
file is missing or broken; we keep the same pair so Java tools and brokers find what they expect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str | os.PathLike, data: bytes, keep_bak: bool = True) -> None:
    """Replace `path` with `data`: tmp file + fsync + rename, previous content kept as .bak."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    _write_synced(tmp, data)
    if keep_bak and target.exists():
        _write_synced(target.with_name(target.name + ".bak"), target.read_bytes())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_with_fallback(path: str | os.PathLike, parse: Callable[[bytes], T]) -> T | None:
    """Parse the file, or its .bak when the file is missing, empty or unparsable (as RocketMQ's
    ConfigManager does); None when neither exists. A broken pair raises the main file's error."""
    target = Path(path)
    first_error: Exception | None = None
    for candidate in (target, target.with_name(target.name + ".bak")):
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        if not data.strip():
            continue
        try:
            return parse(data)
        except ValueError as exc:
            first_error = first_error or ValueError(f"{candidate}: {exc}")
    if first_error is not None:
        raise first_error
    return None
