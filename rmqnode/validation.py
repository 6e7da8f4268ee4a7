"""Names, numbers and strings as they enter the node, checked with RocketMQ's rules.

Every request field that names a topic or a group, counts queues or picks one, passes through
here before a handler acts on it; and this is the only place that turns a name into a path
(`store_path`), which proves the path stays inside the directory it was asked for. Errors are
RemotingErrors with Java's codes and remarks, so the transport answers them as Java would.
"""

from __future__ import annotations

import os
import re

from rmqnode.errors import RemotingError
from rmqnode.net.codes import ResponseCode
from rmqnode.speedups import accelerate

# TopicValidator / Validators (4.9.8): the same characters for topics and groups.
NAME_PATTERN = re.compile(r"[%|a-zA-Z0-9_-]+")
# Broker and cluster names: the same characters and dots, since Java's default broker name is
# the host name (each also names a topic the broker creates for itself).
LABEL_PATTERN = re.compile(r"[%|a-zA-Z0-9_.-]+")
TOPIC_MAX_LENGTH = 127
GROUP_MAX_LENGTH = 255
# Ours: Java takes any int, but 10^8 queues would allocate gigabytes before the first answer.
# 1024 is the largest count a 4.9.8 broker creates itself (BenchmarkTest).
QUEUE_NUMS_MAX = 1024

INT32 = (-(1 << 31), (1 << 31) - 1)
INT64 = (-(1 << 63), (1 << 63) - 1)

# Remarks and log lines show at most this much of a value a peer sent.
QUOTE_LIMIT = 64

VALID_TOPICS: set[str] = set()  # names that passed: a cache on the send path, not a registry
_CACHE_LIMIT = 100_000


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A peer's value for a remark or a log line: repr'd (so control characters and lone
    surrogates show as escapes) and cut to `limit` characters, never the 10 MB a client sent."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"...({len(text)} chars)"
    return repr(text)


def _text(value: object, what: str) -> None:
    """Names from JSON bodies may be any JSON value: only a string (or nothing) goes on."""
    if value is not None and not isinstance(value, str):
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"The specified {what} is not a string: {quote(value)}")


def topic(name: str | None) -> str:
    """TopicValidator.validateTopic, with its remarks (SYSTEM_ERROR). It holds for the topics
    the broker derives from a group (%RETRY%, %DLQ%) too: the store takes no longer topic."""
    if type(name) is str and name in VALID_TOPICS:
        return name
    _text(name, "topic")
    if not name or name.isspace():  # type: ignore[union-attr]
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "The specified topic is blank.")
    if not NAME_PATTERN.fullmatch(name):
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "The specified topic contains illegal "
                            "characters, allowing only ^[%|a-zA-Z0-9_-]+$")
    if len(name) > TOPIC_MAX_LENGTH:
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            "The specified topic is longer than topic max length.")
    if len(VALID_TOPICS) < _CACHE_LIMIT:
        VALID_TOPICS.add(name)
    return name


def group(name: str | None) -> str:
    """Validators.checkGroup's rules, answered as the broker answers a bad name."""
    _text(name, "group")
    if not name or name.isspace():  # type: ignore[union-attr]
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "The specified group is blank.")
    if not NAME_PATTERN.fullmatch(name):
        raise RemotingError(ResponseCode.SYSTEM_ERROR, "The specified group contains illegal "
                            "characters, allowing only ^[%|a-zA-Z0-9_-]+$")
    if len(name) > GROUP_MAX_LENGTH:
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"the specified group is longer than group max length "
                            f"{GROUP_MAX_LENGTH}.")
    return name


def is_name(name: object, max_length: int = GROUP_MAX_LENGTH) -> bool:
    """Whether a value read from a file or a body could be a topic or group name."""
    return (isinstance(name, str) and 0 < len(name) <= max_length
            and NAME_PATTERN.fullmatch(name) is not None)


def store_path(root: str | os.PathLike[str], *parts: str) -> str:
    """`root/part/...`, proved to stay inside `root` (no part may be absolute, empty, `.`,
    `..` or hold a separator or NUL). The only way a name becomes a path in the store."""
    for part in parts:
        if (not isinstance(part, str) or not part or part in (".", "..") or "\0" in part
                or "/" in part or (os.altsep and os.altsep in part) or os.sep in part):
            raise RemotingError(ResponseCode.SYSTEM_ERROR,
                                f"{quote(part)} cannot name a file in the store")
    base = os.path.abspath(root)
    path = os.path.join(base, *parts)
    if os.path.commonpath([base, os.path.abspath(path)]) != base:  # belt and braces
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"{quote(path)} is outside the store {quote(base)}")
    return path


def integer(value: str | None, field: str, lo: int = INT64[0], hi: int = INT64[1],
            default: int | None = None) -> int:
    """A decimal header field as Java's Long/Integer.parseInt reads it (ASCII digits, an
    optional sign, in range), or `default` when absent; else the error Java's header decoder
    gives."""
    if value is None or value == "":
        if default is None:
            raise RemotingError(ResponseCode.SYSTEM_ERROR, f"the custom field <{field}> is null")
        return default
    digits = value[1:] if type(value) is str and value[0] in "+-" else value
    if type(digits) is not str or not (digits.isascii() and digits.isdecimal()
                                       and len(digits) <= 19):
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"the custom field <{field}> is not a number: {quote(value)}")
    number = int(value)
    if not lo <= number <= hi:
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"the custom field <{field}> is out of range [{lo}, {hi}]: {number}")
    return number


# The decimal strings of the small ints most int fields carry (queue ids, flags, counts),
# each mapped to what integer() reads from it: one dict lookup instead of its digit checks.
_SMALL_INTS = {str(i): i for i in range(-1, 1025)}


def int32(value: str | None, field: str, default: int | None = None) -> int:
    """integer() of an int field (Java's Integer.parseInt), the common values at a lookup."""
    number = _SMALL_INTS.get(value)  # type: ignore[arg-type]
    if number is not None:
        return number
    if value is None and default is not None:
        return default
    return integer(value, field, *INT32, default)


# Three header fields per send: in C (csrc/send.c), the pure code the fallback.
integer = accelerate(integer)
int32 = accelerate(int32)


def queue_nums(value: int, field: str) -> int:
    """A topic's read or write queue count (0 is allowed: a topic being drained)."""
    if not 0 <= value <= QUEUE_NUMS_MAX:
        raise RemotingError(ResponseCode.SYSTEM_ERROR,
                            f"{field} must be between 0 and {QUEUE_NUMS_MAX}, not {value}")
    return value


def has_lone_surrogate(text: str) -> bool:
    """Whether a decoded string holds a UTF-16 surrogate on its own (`"\\ud800"` in JSON):
    no file or peer can take it as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
