"""Config files written so that a crash at any instant leaves a readable copy.

RocketMQ keeps `<file>` and `<file>.bak` (MixAll.string2File) and loads the .bak when the main
file is missing or broken; we keep the same pair so Java tools and brokers find what they expect.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rmqnode import log

T = TypeVar("T")


def _write_synced(path: Path, data: bytes, mode: int | None = None) -> None:
    """With `mode`, the file has it from its creation (no moment of wider access); a file
    left from an earlier try is set to it before anything is written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o666 if mode is None else mode)  # 0o666: as open() does
    with open(fd, "wb") as f:
        if mode is not None:
            os.fchmod(fd, mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: str | os.PathLike, data: bytes, keep_bak: bool = True,
                 mode: int | None = None) -> None:
    """Replace `path` with `data`: tmp file + fsync + rename, previous content kept as .bak.
    The new file has `mode`, else the mode of the file it replaces (an operator's chmod 600
    of a file holding secrets survives the rewrite), else the umask's."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and target.exists():
        mode = target.stat().st_mode & 0o7777
    tmp = target.with_name(target.name + ".tmp")
    _write_synced(tmp, data, mode)
    if keep_bak and target.exists():
        _write_synced(target.with_name(target.name + ".bak"), target.read_bytes(), mode)
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class BrokenFileError(ValueError):
    """A file that cannot be read, without a usable .bak: the node refuses to start (as Java's
    broker does) and says which file and what to do, in one line."""


def load_with_fallback(path: str | os.PathLike, parse: Callable[[bytes], T]) -> T | None:
    """Parse the file, or its .bak when the file is missing, empty or unparsable (as RocketMQ's
    ConfigManager does); None when neither exists. Loading the .bak is said loudly: the last
    change written before the stop may be lost. Raises BrokenFileError when the file is broken
    and the .bak does not save it."""
    target = Path(path)
    bak = target.with_name(target.name + ".bak")
    broken: dict[Path, str] = {}
    for candidate in (target, bak):
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        if not data.strip():
            continue
        try:
            value = parse(data)
        except ValueError as exc:
            broken[candidate] = _short(exc)
            continue
        if candidate == bak:
            log.lifecycle.warning("config.loaded_from_bak", file=target, bak=bak,
                                  reason=broken.get(target, "missing or empty"),
                                  note="the last change before the stop may be lost")
        return value
    if broken:
        first, reason = next(iter(broken.items()))
        raise BrokenFileError(f"{first} is unusable ({reason}) and has no usable .bak; "
                              "fix or remove it")
    return None


def _short(exc: Exception, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
