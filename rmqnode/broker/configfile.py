"""The broker's JSON config files (topics, consumer offsets, groups, delay offsets), in Java's
shape under <storePathRootDir>/config, written atomically with a .bak as Java keeps them.

Loading is strict about the file and lenient about its entries: a file that is not JSON, or
not of the expected shape (a list, a table that is not an object), is refused and its .bak
used instead, or the node does not start (BrokenFileError, one line). One entry that is wrong
(a name that is no topic or group name, a count that is no number) is skipped with a warning:
it must not cost every other topic or offset of the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from rmqnode import log
from rmqnode.atomicfile import load_with_fallback, write_atomic
from rmqnode.config import BrokerConfig
from rmqnode.net import fastjson
from rmqnode.validation import quote

V = TypeVar("V")
_ENTRY_ERRORS = (TypeError, ValueError, KeyError, AttributeError)


class JsonConfigFile:
    """Subclasses say what their file holds; this base loads (falling back to .bak) and saves."""

    file_name = ""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.path = os.path.join(config.storePathRootDir, "config", self.file_name)
        self.dirty = False

    def load(self) -> None:
        """Load the file, or its .bak (see load_with_fallback); raises BrokenFileError."""
        load_with_fallback(self.path, self._parse)

    def _parse(self, raw: bytes) -> bool:
        try:
            data = fastjson.loads(raw)
        except ValueError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"wrong shape: a JSON {type(data).__name__}, not an object")
        try:
            self.decode(data)
        except _ENTRY_ERRORS as exc:
            raise ValueError(f"wrong shape: {type(exc).__name__}: {exc}") from None
        return True

    def table_of(self, data: dict[str, Any], field: str) -> dict[Any, Any]:
        """A table of the file (absent: empty); anything but an object is the wrong shape."""
        table = data.get(field) or {}
        if not isinstance(table, dict):
            raise TypeError(f"{field} is a {type(table).__name__}, not an object")
        return table

    def valid_entries(self, table: dict[Any, Any], convert: Callable[[Any, Any], V]
                      ) -> dict[Any, V]:
        """`convert(key, value)` of every entry; one that raises is skipped, and the skipped
        ones are said in one warning line for the file."""
        kept: dict[Any, V] = {}
        skipped = []
        for key, value in table.items():
            try:
                kept[key] = convert(key, value)
            except _ENTRY_ERRORS as exc:
                skipped.append(f"{quote(key)}: {exc}")
        if skipped:
            log.lifecycle.warning("config.entries_skipped", file=self.path, count=len(skipped),
                                  first=skipped[0])
        return kept

    def persist(self) -> None:
        write_atomic(self.path, fastjson.dumpb(self.encode()))
        self.dirty = False

    def persist_if_dirty(self) -> None:
        if self.dirty:
            self.persist()

    def decode(self, data: dict[str, Any]) -> None:
        """Take the file's content; raise (TypeError, ValueError, ...) before changing
        anything when its shape is wrong, so that the .bak can be tried instead."""
        raise NotImplementedError

    def encode(self) -> dict[str, Any]:
        raise NotImplementedError
