"""Structured, quiet-by-default logging: one line per event, `event key=value ...`.

Operators grep these lines; tests read them. Values with spaces are quoted.
"""

from __future__ import annotations

import functools
import logging
import sys
import time

_configured = False


def _fmt(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class EventLogger:
    """A thin wrapper that renders `event(name, **fields)` as one key=value line."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)
        # debug_enabled as one call (the compiled read path asks it on every read)
        self.debug_check = functools.partial(self._log.isEnabledFor, logging.DEBUG)

    def _emit(self, level: int, event: str, fields: dict[str, object]) -> None:
        if self._log.isEnabledFor(level):
            parts = [event] + [f"{k}={_fmt(v)}" for k, v in fields.items()]
            self._log.log(level, " ".join(parts))

    @property
    def debug_enabled(self) -> bool:
        """For hot paths: check before building the fields of a debug line."""
        return self.debug_check()

    def debug(self, event: str, **fields: object) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._emit(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: object) -> None:
        parts = [event] + [f"{k}={_fmt(v)}" for k, v in fields.items()]
        self._log.exception(" ".join(parts))


class Throttled:
    """Repeated identical events as a few lines: a failure that repeats on every send or
    every retry (a full disk, a blocked queue directory) would otherwise flood the log and
    bury everything else. The first occurrence of each key is logged at once; later ones
    are counted and logged at most once per `every` seconds, with `repeated=` saying how
    many were held back since the last line."""

    def __init__(self, logger: EventLogger, every: float = 10.0) -> None:
        self._logger = logger
        self._every = every
        self._seen: dict[object, tuple[float, int]] = {}  # key -> (last line at, held back)

    def error(self, event: str, key: object = None, **fields: object) -> None:
        self._emit(self._logger.error, event, key, fields)

    def warning(self, event: str, key: object = None, **fields: object) -> None:
        self._emit(self._logger.warning, event, key, fields)

    def _emit(self, emit, event: str, key: object, fields: dict[str, object]) -> None:
        now = time.monotonic()
        slot = (event, key)
        last = self._seen.get(slot)
        if last is not None and now - last[0] < self._every:
            self._seen[slot] = (last[0], last[1] + 1)
            return
        if last is not None and last[1]:
            fields = {**fields, "repeated": last[1]}
        self._seen[slot] = (now, 0)
        emit(event, **fields)

    def forget(self, key: object = None) -> None:
        """The condition behind `key` is over: its next occurrence is news again."""
        for slot in [s for s in self._seen if s[1] == key]:
            del self._seen[slot]


def get(name: str) -> EventLogger:
    return EventLogger(name)


def setup(verbosity: int = 0, stream=None) -> None:
    """0: warnings and the few lifecycle lines; 1 (-v): info; 2 (-vv): debug."""
    global _configured
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger("rmqnode")
    if not _configured:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.propagate = False
        _configured = True
    root.setLevel(level)
    # Start/stop lines (with the addresses actually bound) are the one thing shown by default.
    logging.getLogger(LIFECYCLE).setLevel(min(level, logging.INFO))


LIFECYCLE = "rmqnode.lifecycle"
lifecycle = EventLogger(LIFECYCLE)
