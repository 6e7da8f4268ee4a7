"""JSON bodies as Java RocketMQ's fastjson writes and reads them.

fastjson emits maps with non-string keys as non-standard JSON: `{0:"127.0.0.1:10911"}` for a
Map<Long,String>, and `{{"brokerName":"b","queueId":0,"topic":"T"}:5}` for a Map<MessageQueue,..>.
`loads` accepts those (and plain JSON fast); `dumps` can produce them for peers that expect them.

Non-string keys come back as strings for numbers (so `addrs["0"]` works whichever form arrived)
and as `ObjectKey` for object keys.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rmqnode import validation

# Real bodies nest fewer than 10 levels; the parsers recurse once or twice per level, so a
# limit keeps a body of 100,000 `[` a ValueError instead of a RecursionError.
BODY_MAX_DEPTH = 256

_dumps_str = json.JSONEncoder(ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True).encode
_compact_str = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_compact_ascii = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class ObjectKey(tuple):
    """A JSON object used as a map key (fastjson's Map<MessageQueue,..>), hashable and ordered."""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectKey:
        return cls(sorted(obj.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self)


class UnquotedKey(int):
    """An integer map key written without quotes, as fastjson writes Map<Long,..> keys."""


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?")
_BARE = re.compile(r"[A-Za-z_$][\w$]*")
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def nests_deeper(text: str, limit: int) -> bool:
    """Whether JSON text opens more than `limit` arrays and objects inside one another
    (brackets inside strings do not count). Run before parsing, since parsers recurse per
    level; text with too few brackets to nest that deep is not scanned at all."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for ch in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def lone_surrogate_in(text: str, value: Any) -> bool:
    """Whether `value`, parsed from JSON `text`, holds a lone UTF-16 surrogate in a key or a
    string: no file or peer could take it as UTF-8 later. Only a \\uD800-\\uDFFF escape can
    make one (UTF-8 input cannot), so the walk runs only when the text has such an escape."""
    if _SURROGATE_ESCAPE.search(text) is None:
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if validation.has_lone_surrogate(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):  # an ObjectKey is a tuple of (key, value) pairs
            stack.extend(v)
    return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.decoder = json.JSONDecoder()

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{what} at char {self.pos}")

    def ws(self) -> None:
        self.pos = _WS.match(self.text, self.pos).end()

    def value(self) -> Any:
        self.ws()
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("unexpected end of JSON")
        ch = text[pos]
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.arr()
        if ch == '"':
            value, self.pos = json.decoder.scanstring(text, pos + 1)
            return value
        m = _NUMBER.match(text, pos)
        if m:
            self.pos = m.end()
            return float(m.group()) if m.group(1) or m.group(2) else int(m.group())
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                self.pos = pos + len(word)
                return value
        raise self.fail(f"unexpected {ch!r}")

    def key(self) -> Any:
        self.ws()
        text, pos = self.text, self.pos
        ch = text[pos] if pos < len(text) else ""
        if ch == '"':
            key, self.pos = json.decoder.scanstring(text, pos + 1)
            return key
        if ch == "{":
            return ObjectKey.of(self.obj())
        m = _NUMBER.match(text, pos) or _BARE.match(text, pos)
        if m:
            self.pos = m.end()
            return m.group()
        raise self.fail("expected an object key")

    def obj(self) -> dict[Any, Any]:
        self.pos += 1
        out: dict[Any, Any] = {}
        self.ws()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return out
        while True:
            key = self.key()
            self.ws()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':'")
            self.pos += 1
            out[key] = self.value()
            self.ws()
            ch = self.text[self.pos:self.pos + 1]
            self.pos += 1
            if ch == "}":
                return out
            if ch != ",":
                raise self.fail("expected ',' or '}'")

    def arr(self) -> list[Any]:
        self.pos += 1
        out: list[Any] = []
        self.ws()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return out
        while True:
            out.append(self.value())
            self.ws()
            ch = self.text[self.pos:self.pos + 1]
            self.pos += 1
            if ch == "]":
                return out
            if ch != ",":
                raise self.fail("expected ',' or ']'")


def loads(data: bytes | str) -> Any:
    """Parse a body written by fastjson, jsoncpp or any standard JSON writer. ValueError for
    what no Java peer could have written: nesting deeper than BODY_MAX_DEPTH, or a lone
    surrogate, which would make every later write of the value (a config file) fail."""
    text = str(data, "utf-8") if isinstance(data, (bytes, bytearray, memoryview)) else data
    if nests_deeper(text, BODY_MAX_DEPTH):
        raise ValueError(f"JSON nests deeper than {BODY_MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except ValueError:
        parser = _Parser(text)
        value = parser.value()
        parser.ws()
        if parser.pos != len(text):
            raise parser.fail("trailing data after JSON") from None
    if lone_surrogate_in(text, value):
        raise ValueError("JSON holds a lone UTF-16 surrogate")
    return value


def _standard(value: Any) -> bool:
    """True when `value` holds nothing only fastjson writes: no UnquotedKey or ObjectKey keys
    (nor other non-str keys), no sets."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(type(k) is str for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, (set, frozenset)):
            return False
    return True


def dumps(value: Any, ascii_only: bool = False) -> str:
    """Compact JSON as fastjson writes it. `UnquotedKey` and `ObjectKey` keys stay non-standard.

    Keys are written in the order given: callers build dicts in fastjson's (alphabetical bean
    property) order where a peer might care.
    """
    if _standard(value):  # json's C encoder writes the same bytes, many times faster
        return _compact_ascii(value) if ascii_only else _compact_str(value)
    return dumps_fastjson(value, ascii_only)


def dumps_fastjson(value: Any, ascii_only: bool = False) -> str:
    """The general writer, for values with fastjson-only keys (`dumps` picks)."""
    enc = _dumps_ascii if ascii_only else _dumps_str
    parts: list[str] = []

    def emit(v: Any) -> None:
        if isinstance(v, dict):
            parts.append("{")
            first = True
            for k, item in v.items():
                if not first:
                    parts.append(",")
                first = False
                if isinstance(k, UnquotedKey):
                    parts.append(str(int(k)))
                elif isinstance(k, ObjectKey):
                    emit(k.as_dict())
                else:
                    parts.append(enc(str(k)))
                parts.append(":")
                emit(item)
            parts.append("}")
        elif isinstance(v, (list, tuple, set, frozenset)):
            parts.append("[")
            for i, item in enumerate(v):
                if i:
                    parts.append(",")
                emit(item)
            parts.append("]")
        elif isinstance(v, str):
            parts.append(enc(v))
        elif v is True:
            parts.append("true")
        elif v is False:
            parts.append("false")
        elif v is None:
            parts.append("null")
        elif isinstance(v, (int, float)):
            parts.append(repr(float(v)) if isinstance(v, float) else str(int(v)))
        else:
            raise TypeError(f"cannot encode {type(v).__name__} as JSON")

    emit(value)
    return "".join(parts)


def dumpb(value: Any, ascii_only: bool = False) -> bytes:
    return dumps(value, ascii_only).encode()
