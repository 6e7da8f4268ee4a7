"""The broker's JSON config files (topics, consumer offsets, groups, delay offsets), in Java's
shape under <storePathRootDir>/config, written atomically with a .bak as Java keeps them."""

from __future__ import annotations

import os
from typing import Any

from rmqnode.atomicfile import load_with_fallback, write_atomic
from rmqnode.config import BrokerConfig
from rmqnode.net import fastjson


class JsonConfigFile:
    """Subclasses say what their file holds; this base loads (falling back to .bak) and saves."""

    file_name = ""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.path = os.path.join(config.storePathRootDir, "config", self.file_name)
        self.dirty = False

    def load(self) -> None:
        data = load_with_fallback(self.path, fastjson.loads)
        if data is not None:
            self.decode(data)

    def persist(self) -> None:
        write_atomic(self.path, fastjson.dumpb(self.encode()))
        self.dirty = False

    def persist_if_dirty(self) -> None:
        if self.dirty:
            self.persist()

    def decode(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def encode(self) -> dict[str, Any]:
        raise NotImplementedError
