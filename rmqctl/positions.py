"""Where reading starts and stops: rpk's offset mini-language for `--from`, `--to` and
`offset at --time`, parsed without any IO, so a malformed value fails before a connection is
made and relative times mean one instant for every queue. GroupConsumer resolves each
Position per queue (first and last offsets, SEARCH_OFFSET_BY_TIMESTAMP).

    N  first|start  last|end  -N (N before the end)  +N (N after the first)
    @MS (13 digits)  @S (9-10 digits)  @YYYY-MM-DD (UTC)  @RFC3339  @-1h  @-1m30s  @+10m
    START:END  with either side empty; after @T1:, END may be a time without @, `end`,
    or an unsigned duration after T1 (@2026-11-29:1h)
    msgid:ID (a start only, then :END as above): found once connected, it becomes an Anchor
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rmqnode import validation

FORMS = ("an offset N, first, last, -N (N before the end), +N (N after the first), or a time "
         "@1764410400000 (ms), @1764410400 (s), @2026-11-29, @2026-11-29T10:00:00Z, "
         "@2026-11-29T10:00:00+08:00, @-1h, @-15m, @-1m30s")
RANGE_FORMS = FORMS + ("; or a message msgid:ID (its offsetMsgId or msgId); or a range "
                       "START:END (10:20, 10:, :20, :end, @-1h:end, @T1:T2, msgid:ID:end)")
TIME_FORMS = ("1764410400000 (ms), 1764410400 (s), 2026-11-29 (UTC), 2026-11-29T10:00:00Z, "
              "2026-11-29T10:00:00+08:00, -1h, -15m, -1m30s (before now), with or without @")

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = r"(?:\d+(?:ms|s|m|h|d))+"
_DATETIME = (r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
             r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
             r"(?P<zone>Z|z|[+-]\d{2}:\d{2})?)?")
# One time token, as long as it goes: RFC 3339 has colons of its own, so a range's colon is
# the first one after a whole token, not the first in the text.
_TIME = re.compile(rf"{_DATETIME}|(?P<rel>[+-]{_DURATION})|(?P<num>\d+)")
_AFTER = re.compile(_DURATION)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Kind(enum.Enum):
    OFFSET = "offset"
    FIRST = "first"
    END = "end"
    BEFORE_END = "before end"
    AFTER_FIRST = "after first"
    TIME = "time"
    MESSAGE = "message"  # msgid:ID, until the command finds the message (Anchor)


@dataclass(frozen=True)
class Position:
    """A place in every queue: `value` is the offset, the N of -N/+N, or the store time
    in ms since the epoch; `msg_id` the ID of msgid:ID."""
    kind: Kind
    value: int = 0
    msg_id: str = ""


@dataclass(frozen=True)
class Anchor:
    """msgid:ID once its message is found. Queues have no common order, so the rule is:
    the message's own queue (its topic, its broker's address, its queue id) starts at the
    message; every other queue where @TIME would start it, at its first message stored at
    or after the message's store time (the same millisecond included)."""
    topic: str
    addr: str
    queue_id: int
    queue_offset: int
    store_timestamp: int

    def start(self, topic: str, addr: str, queue_id: int) -> Position:
        """Where the queue `queue_id` of `topic` at the broker `addr` starts."""
        if (topic, addr, queue_id) == (self.topic, self.addr, self.queue_id):
            return Position(Kind.OFFSET, self.queue_offset)
        return Position(Kind.TIME, self.store_timestamp)


@dataclass(frozen=True)
class Span:
    """Where reading starts (None: the command's own default) and where it stops, before
    the end position (None: it follows new messages)."""
    start: Position | None
    end: Position | None


class PositionError(ValueError):
    """A malformed position: one line naming the value and the accepted forms (exit 2)."""


def _fail(text: str, why: str, forms: str) -> PositionError:
    return PositionError(f"{text!r}: {why}; give {forms}")


def _ms(number: int, text: str, forms: str) -> int:
    if not 0 <= number <= validation.INT64[1]:
        raise _fail(text, "out of range (before 1970, or too far ahead)", forms)
    return number


def _duration(text: str) -> int:
    return sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", text))


def _time_token(s: str, pos: int, now_ms: int, whole: str, forms: str) -> tuple[int, int]:
    """The time at s[pos:] and where it ends; errors name the value `whole`."""
    m = _TIME.match(s, pos)
    if m is None or m.end() == pos:
        raise _fail(whole, f"{s[pos:]!r} is not a time", forms)
    if m.group("num") is not None:
        digits = m.group("num")
        if re.match(_DURATION, s[pos:]):
            raise _fail(whole, f"{s[pos:]!r}: a duration needs its sign (-1h: an hour ago, "
                        "+1h: an hour from now)", forms)
        number = int(digits) * (1000 if len(digits) in (9, 10) else 1)
        return _ms(number, whole, forms), m.end()
    if m.group("rel") is not None:
        rel = m.group("rel")
        sign = -1 if rel[0] == "-" else 1
        return _ms(now_ms + sign * _duration(rel[1:]), whole, forms), m.end()
    if m.group("H") is not None and m.group("zone") is None:
        raise _fail(whole, "a date and time needs its zone: Z (UTC) or an offset like +08:00",
                    forms)
    zone = timezone.utc
    if m.group("zone") not in (None, "Z", "z"):
        hours, minutes = m.group("zone")[1:].split(":")
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        zone = timezone(-delta if m.group("zone")[0] == "-" else delta)
    try:
        when = datetime(int(m.group("y")), int(m.group("mo")), int(m.group("d")),
                        int(m.group("H") or 0), int(m.group("M") or 0),
                        int(m.group("S") or 0), int((m.group("f") or "0").ljust(6, "0")[:6]),
                        tzinfo=zone)
    except ValueError as exc:
        raise _fail(whole, f"not a date ({exc})", forms) from None
    return _ms((when - _EPOCH) // timedelta(milliseconds=1), whole, forms), m.end()


def _whole_time(s: str, now_ms: int, whole: str, forms: str) -> int:
    """`s` is one time, `@` optional, and nothing after it."""
    body = s[1:] if s.startswith("@") else s
    if not body:
        raise _fail(whole, "no time after @" if s else "empty", forms)
    when, end = _time_token(body, 0, now_ms, whole, forms)
    if end != len(body):
        raise _fail(whole, f"{body[end:]!r} after the time", forms)
    return when


def parse_time(text: str, now_ms: int) -> int:
    """A time, `@` optional (offset at --time): ms since the epoch."""
    return _whole_time(text, now_ms, text, TIME_FORMS)


def parse_position(text: str, now_ms: int) -> Position:
    """One position (`--to`): no range."""
    return _position(text, now_ms, text, FORMS)


def _position(part: str, now_ms: int, whole: str, forms: str) -> Position:
    """`part` of the value `whole`, which errors name."""
    what = "" if part == whole else f"{part!r}: "
    if part in ("first", "start"):
        return Position(Kind.FIRST)
    if part in ("last", "end"):
        return Position(Kind.END)
    if part.startswith("@"):
        return Position(Kind.TIME, _whole_time(part, now_ms, whole, forms))
    m = re.fullmatch(r"([+-]?)(\d+)", part)
    if m is None:
        raise _fail(whole, f"{what}not a position", forms)
    number = int(m.group(2))
    if number > validation.INT64[1]:
        raise _fail(whole, f"{what}out of range", forms)
    kind = {"": Kind.OFFSET, "-": Kind.BEFORE_END, "+": Kind.AFTER_FIRST}[m.group(1)]
    return Position(kind, number)


def parse_span(text: str, now_ms: int) -> Span:
    """A `--from` value: one position (reading then follows), or START:END."""
    if not text:
        raise _fail(text, "empty", RANGE_FORMS)
    if text.startswith(MSGID):
        msg_id, _, tail = text[len(MSGID):].partition(":")
        return Span(message_position(msg_id, text),
                    _position(tail, now_ms, text, RANGE_FORMS) if tail else None)
    if text.startswith("@"):
        return _time_span(text, now_ms)
    if ":" not in text:
        return Span(_position(text, now_ms, text, RANGE_FORMS), None)
    head, tail = text.split(":", 1)
    return Span(_position(head, now_ms, text, RANGE_FORMS) if head else None,
                _position(tail, now_ms, text, RANGE_FORMS) if tail else None)


MSGID = "msgid:"


def message_position(msg_id: str, whole: str) -> Position:
    """msgid:ID: the id checked as `message get` checks it (either kind, no IO yet)."""
    from rmqctl.commands.message import id_kind  # the one reading of ids; imports clients
    try:
        id_kind(msg_id)
    except ValueError as exc:
        raise _fail(whole, str(exc), RANGE_FORMS) from None
    return Position(Kind.MESSAGE, msg_id=msg_id.upper())


def _time_span(text: str, now_ms: int) -> Span:
    """@T, @T:, @:T, @T1:T2, @T1:@T2, @T:end, @T:DURATION (DURATION after T)."""
    start = None
    pos = 1
    if not text.startswith("@:"):
        when, pos = _time_token(text, 1, now_ms, text, RANGE_FORMS)
        start = Position(Kind.TIME, when)
    if pos == len(text):
        return Span(start, None)
    if text[pos] != ":":
        raise _fail(text, f"{text[pos:]!r} after the time", RANGE_FORMS)
    tail = text[pos + 1:]
    if not tail:
        return Span(start, None)
    if tail in ("end", "last"):
        return Span(start, Position(Kind.END))
    if start is not None and _AFTER.fullmatch(tail):
        return Span(start, Position(Kind.TIME, _ms(start.value + _duration(tail), text,
                                                   RANGE_FORMS)))
    return Span(start, Position(Kind.TIME, _whole_time(tail, now_ms, text, RANGE_FORMS)))


def with_end(span: Span, end: Position | None) -> Span:
    """--from's span with --to's end: the end is given one way or the other."""
    if end is None:
        return span
    if span.end is not None:
        raise PositionError("the end is given twice: in --from (START:END) and with --to; "
                            "give one")
    return Span(span.start, end)


def parse_queue_ids(values: Iterable[str]) -> tuple[int, ...]:
    """--queue, repeatable or a comma list: distinct queue ids in the order given."""
    ids: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item.isdigit() or int(item) > validation.INT32[1]:
                raise PositionError(f"--queue {value!r}: {item!r} is not a queue id; give "
                                    "numbers, e.g. --queue 0 --queue 2 or --queue 0,2")
            if int(item) not in ids:
                ids.append(int(item))
    return tuple(ids)
