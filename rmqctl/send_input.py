"""What `rmqctl send` makes of its input: `--parse` line formats, JSON lines, `--template`
placeholders and the `--rate` pace. Each input record (a line of stdin, or BODY) becomes one
`Outgoing` message; a record that does not fit fails loudly, naming its line (exit 2), as
rpk's produce does, never a silently mis-split message."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import click

from rmqctl.client.producer import Outgoing
from rmqctl.context import EXIT_USAGE
from rmqctl.render import MESSAGE_COLUMNS, unescape

MAX_DELAY_LEVEL = 18  # the broker's default messageDelayLevel has 18 levels (1s ... 2h)


class BadInput(click.ClickException):
    """An input record that does not fit its format (exit code 2, one line naming it)."""

    exit_code = EXIT_USAGE


def utf8(raw: bytes, number: int, what: str) -> str:
    """A field that becomes a property (key, tag, property value) must be text."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"line {number}: the {what} field is not UTF-8 text") from None


def merged(base: Outgoing, body: bytes, tags: str | None, keys: list[str] | None,
           props: dict[str, str], delay_level: int | None) -> Outgoing:
    """The record's message: what the record gives, else the command line's (`base`);
    properties from both, the record's winning."""
    return Outgoing(body, tags or base.tags, keys or base.keys, {**(base.props or {}), **props},
                    base.delay_level if delay_level is None else delay_level)


# --- --parse FORMAT --------------------------------------------------------------------------

_FIELD = re.compile(rb"p:\{([^}]*)\}|p:([\w.-]+)|(keys?|tags?|body)")


def shown(literal: bytes) -> str:
    """A separator as an error shows it: quoted, with escapes ('\\t')."""
    return repr(literal.decode("utf-8", "replace"))


class LineFormat:
    """`--parse 'key\\tbody'`: field names (key, tag, body, p:NAME or p:{NAME}) with the text
    between them as separators, escapes as in --delimiter. Every field but the last ends at
    the first separator after it; the last takes the rest of the line, so a body at the end
    may hold the separator. Text before the first field or after the last must be there."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        fmt = unescape(spec, "--parse")
        self.fields: list[str] = []
        literals: list[bytes] = []
        at = 0
        for m in _FIELD.finditer(fmt):
            literals.append(fmt[at:m.start()])
            name = m.group(3)
            prop = m.group(1) if m.group(1) is not None else m.group(2)
            field = "p:" + prop.decode("utf-8", "replace") if name is None else \
                name.decode().rstrip("s")
            if field in ("p:", *self.fields):
                raise click.UsageError(f"--parse '{spec}': "
                                       + ("p: needs a property name" if field == "p:" else
                                          f"{field} appears twice"))
            self.fields.append(field)
            at = m.end()
        if "body" not in self.fields:
            raise click.UsageError(f"--parse '{spec}' has no body field (fields: key, tag, "
                                   "body, p:NAME)")
        if any(not sep for sep in literals[1:]):
            raise click.UsageError(f"--parse '{spec}': fields need a separator between them")
        self.prefix, self.separators, self.suffix = literals[0], literals[1:], fmt[at:]

    def split(self, number: int, line: bytes) -> dict[str, bytes]:
        def mismatch(why: str) -> BadInput:
            return BadInput(f"line {number} does not match --parse '{self.spec}': {why}")
        if not line.startswith(self.prefix):
            raise mismatch(f"it does not start with {shown(self.prefix)}")
        if not line.endswith(self.suffix) or len(line) < len(self.prefix) + len(self.suffix):
            raise mismatch(f"it does not end with {shown(self.suffix)}")
        rest = line[len(self.prefix):len(line) - len(self.suffix)]
        values: dict[str, bytes] = {}
        for field, sep in zip(self.fields, self.separators):
            end = rest.find(sep)
            if end < 0:
                raise mismatch(f"no {shown(sep)} after its {field} field")
            values[field], rest = rest[:end], rest[end + len(sep):]
        values[self.fields[-1]] = rest
        return values

    def message(self, number: int, line: bytes, base: Outgoing) -> Outgoing:
        values = self.split(number, line)
        text = {f: utf8(v, number, f) for f, v in values.items() if f != "body"}
        props = {f[2:]: v for f, v in text.items() if f.startswith("p:") and v}
        return merged(base, values["body"], text.get("tag"), text.get("key", "").split(),
                      props, None)


# --- JSON lines -------------------------------------------------------------------------------

# What a message row of rmqctl's own json/ndjson output holds (rmqctl.render.MESSAGE_COLUMNS)
# beside body, keys, tags and properties: the broker assigns these anew, so a replayed row
# may carry them and they are passed over.
_ASSIGNED = frozenset(MESSAGE_COLUMNS) - {"body", "keys", "tags", "properties"}
JSON_FIELDS = ("body", "bodyBase64", "keys", "tags", "properties", "delayLevel")


def auto_body(text: str) -> bytes:
    """The bytes behind a body as rmqctl's default rendering shows it (render.body_text
    'auto'): UTF-8 text, or 'base64:' and the base64 of bytes that are not UTF-8."""
    if text.startswith("base64:"):
        try:
            data = base64.b64decode(text[len("base64:"):], validate=True)
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        except binascii.Error:
            pass
    return text.encode("utf-8")


class JsonLines:
    """`--json-input`: each record a JSON object with body (text) or bodyBase64, keys (text,
    space-separated, or a list), tags, properties (text values) and delayLevel; null or empty
    is absent. The other fields of rmqctl's message rows are ignored, so `consume -o ndjson`
    output replays as it is; RocketMQ's own properties in it (UNIQ_KEY, WAIT, CLUSTER ...)
    are set anew by the producer and broker, not copied."""

    def __init__(self) -> None:
        from rmqnode.grpc.messages import SYSTEM_PROPERTY_KEYS  # protobuf: only when needed
        self.reserved = SYSTEM_PROPERTY_KEYS

    def message(self, number: int, line: bytes, base: Outgoing) -> Outgoing:
        def bad(why: str) -> BadInput:
            return BadInput(f"line {number}: {why}")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise bad(f"not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise bad(f"a JSON {type(obj).__name__}, not an object")
        unknown = [k for k in obj if k not in JSON_FIELDS and k not in _ASSIGNED]
        if unknown:
            raise bad(f"unknown field {unknown[0]!r} (fields: {', '.join(JSON_FIELDS)})")

        def field(name: str, kind: type | tuple[type, ...], what: str):
            value = obj.get(name)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise bad(f"{name} must be {what}, not {json.dumps(value)[:40]}")
            return value
        body, b64 = field("body", str, "text"), field("bodyBase64", str, "base64 text")
        if (body is None) == (b64 is None):
            raise bad("give one of body and bodyBase64")
        try:
            data = auto_body(body) if body is not None else base64.b64decode(b64, validate=True)
        except UnicodeEncodeError:
            raise bad("body holds a lone surrogate, which is not text") from None
        except binascii.Error as exc:
            raise bad(f"bodyBase64 is not base64 ({exc})") from None
        keys = field("keys", (str, list), "text or a list of text")
        if isinstance(keys, list) and not all(isinstance(k, str) for k in keys):
            raise bad("keys must be text or a list of text")
        props = field("properties", dict, "an object") or {}
        if not all(isinstance(v, str) for v in props.values()):
            raise bad("property values must be text")
        level = field("delayLevel", int, f"a number 0-{MAX_DELAY_LEVEL}")
        if level is not None and not 0 <= level <= MAX_DELAY_LEVEL:
            raise bad(f"delayLevel must be 0-{MAX_DELAY_LEVEL}, not {level}")
        keys = keys.split() if isinstance(keys, str) else keys
        return merged(base, data, field("tags", str, "text"), keys,
                      {k: v for k, v in props.items() if k not in self.reserved}, level)


# --- --template ---------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
PLACEHOLDERS = "{{seq}} {{uuid}} {{now}} {{now_iso}} {{random N M}}"


def _now_iso(seq: int) -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SIMPLE: dict[str, Callable[[int], str]] = {
    "seq": str,
    "uuid": lambda seq: str(uuid.uuid4()),
    "now": lambda seq: str(time.time_ns() // 1_000_000),
    "now_iso": _now_iso,
}


class Template:
    """Text with placeholders (nats pub's templates): {{seq}} the message's number from 1,
    {{uuid}} a random UUID, {{now}} epoch ms, {{now_iso}} UTC ISO 8601, {{random N M}} an
    integer from N to M. Checked when compiled: an unknown placeholder is a usage error."""

    def __init__(self, text: str, option: str) -> None:
        self.pieces: list[str | Callable[[int], str]] = []
        at = 0
        for m in _PLACEHOLDER.finditer(text):
            self.pieces += [text[at:m.start()], self._placeholder(m.group(1).split(), option)]
            at = m.end()
        self.pieces.append(text[at:])

    @staticmethod
    def _placeholder(words: list[str], option: str) -> Callable[[int], str]:
        if len(words) == 1 and words[0] in _SIMPLE:
            return _SIMPLE[words[0]]
        if words[:1] == ["random"] and len(words) == 3:
            try:
                lo, hi = int(words[1]), int(words[2])
            except ValueError:
                lo, hi = 1, 0
            if lo <= hi:
                return lambda seq: str(random.randint(lo, hi))
        raise click.UsageError(f"{option}: unknown placeholder {{{{{' '.join(words)}}}}} "
                               f"(placeholders: {PLACEHOLDERS}, with N <= M)")

    def expand(self, seq: int) -> str:
        return "".join(p if isinstance(p, str) else p(seq) for p in self.pieces)


# --- --rate -----------------------------------------------------------------------------------

class Pace:
    """At most `rate` messages a second, evenly spaced: a token bucket that holds one token,
    so time a slow input leaves unused is not saved up for a burst."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.due = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        due = max(self.due, now)
        self.due = due + self.gap
        if due > now:
            await asyncio.sleep(due - now)
