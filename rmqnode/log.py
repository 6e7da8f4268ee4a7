"""Structured, quiet-by-default logging: one line per event, `event key=value ...`.

Operators grep these lines; tests read them. Values with spaces are quoted.
"""

from __future__ import annotations

import logging
import sys

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

    def _emit(self, level: int, event: str, fields: dict[str, object]) -> None:
        if self._log.isEnabledFor(level):
            parts = [event] + [f"{k}={_fmt(v)}" for k, v in fields.items()]
            self._log.log(level, " ".join(parts))

    @property
    def debug_enabled(self) -> bool:
        """For hot paths: check before building the fields of a debug line."""
        return self._log.isEnabledFor(logging.DEBUG)

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
