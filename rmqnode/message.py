"""Messages as RocketMQ encodes them, without IO: properties, ids, tag hash codes, sys flags,
compression, batch bodies. Shared by the broker, the store, the client library and rmqctl.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from operator import mul

import zstandard

from rmqnode import lz4frame
from rmqnode.speedups import accelerate

# -- sys flag bits (MessageSysFlag) ---------------------------------------------------------
COMPRESSED_FLAG = 0x1
MULTI_TAGS_FLAG = 0x2
TRANSACTION_NOT_TYPE = 0x0
TRANSACTION_PREPARED_TYPE = 0x4
TRANSACTION_COMMIT_TYPE = 0x8
TRANSACTION_ROLLBACK_TYPE = 0xC
TRANSACTION_MASK = 0xC
BORNHOST_V6_FLAG = 0x10
STOREHOST_V6_FLAG = 0x20
NEED_UNWRAP_FLAG = 0x40
INNER_BATCH_FLAG = 0x80
COMPRESSION_LZ4 = 0x100
COMPRESSION_ZSTD = 0x200
COMPRESSION_ZLIB = 0x300
COMPRESSION_MASK = 0x700

# -- property keys (MessageConst) -----------------------------------------------------------
KEYS = "KEYS"
TAGS = "TAGS"
WAIT = "WAIT"
DELAY = "DELAY"
UNIQ_KEY = "UNIQ_KEY"
RETRY_TOPIC = "RETRY_TOPIC"
REAL_TOPIC = "REAL_TOPIC"
REAL_QID = "REAL_QID"
TRAN_MSG = "TRAN_MSG"
PGROUP = "PGROUP"
ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
RECONSUME_TIME = "RECONSUME_TIME"
MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
MSG_REGION = "MSG_REGION"
TRACE_ON = "TRACE_ON"
CLUSTER = "CLUSTER"
TRANSACTION_ID = "__transactionId__"
TRANSACTION_CHECK_TIMES = "TRANSACTION_CHECK_TIMES"
TRAN_PREPARED_QUEUE_OFFSET = "TRAN_PREPARED_QUEUE_OFFSET"
CHECK_IMMUNITY_TIME_IN_SECONDS = "CHECK_IMMUNITY_TIME_IN_SECONDS"
MIN_OFFSET = "MIN_OFFSET"
MAX_OFFSET = "MAX_OFFSET"
INNER_NUM = "INNER_NUM"
DLQ_ORIGIN_TOPIC = "DLQ_ORIGIN_TOPIC"
DLQ_ORIGIN_MESSAGE_ID = "DLQ_ORIGIN_MESSAGE_ID"
POP_CK = "POP_CK"
FIRST_POP_TIME = "1ST_POP_TIME"

# Prefixes of the topics the broker makes per consumer group (MixAll).
RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"
MAX_PROPERTIES_LENGTH = 32767


# -- properties string ----------------------------------------------------------------------

def encode_properties(props: dict[str, str], order: Iterable[str] | None = None) -> str:
    """`name\\x01value` pairs joined by \\x02, as a 4.9.8 broker stores them: without the
    trailing \\x02 that clients put on the wire (messageProperties2String drops it). In the
    order of `order` (every key of `props`) when given: no reordered copy of `props`."""
    if order is None:
        return "\x02".join([k + "\x01" + v for k, v in props.items()])
    return "\x02".join([k + "\x01" + props[k] for k in order])


def decode_properties(text: str) -> dict[str, str]:
    """Java's string2messageProperties: split on \\x02, then at the first \\x01; a piece with
    no separator, or an empty name or value, is ignored."""
    props: dict[str, str] = {}
    for item in text.split("\x02"):
        name, sep, value = item.partition("\x01")
        if sep and name and value:
            props[name] = value
    return props


decode_properties = accelerate(decode_properties)


def wait_store_ok(properties: dict[str, str]) -> bool:
    """Java's isWaitStoreMsgOK: whether the producer waits for the flush (and the slave) it
    was promised, unless WAIT says "false". A put has one, its first message's: a batch put
    from its body (csrc/batch.c) reads it without a message."""
    return properties.get(WAIT, "true").lower() != "false"


# -- hash codes -----------------------------------------------------------------------------

_POW31: list[int] = [1]
_REVERSED_POW31: dict[int, list[int]] = {}


def _powers(n: int) -> list[int]:
    """31^(n-1) ... 31^0 mod 2^32: the weights of a string of n code units."""
    pows = _REVERSED_POW31.get(n)
    if pows is None:
        while len(_POW31) < n:
            _POW31.append(_POW31[-1] * 31 & 0xFFFFFFFF)
        pows = _REVERSED_POW31[n] = _POW31[n - 1::-1] if n else []
    return pows


def java_hash(text: str) -> int:
    """Java String.hashCode: 31*h + c over UTF-16 code units, as a signed 32-bit int.

    Computed as sum(c_i * 31^(n-1-i)) mod 2^32 with precomputed powers, so the loop runs in C.
    """
    if text.isascii():
        units: bytes | list[int] = text.encode()
    else:
        raw = text.encode("utf-16-be")
        units = [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]
    h = sum(map(mul, units, _powers(len(units)))) & 0xFFFFFFFF
    return h - 0x100000000 if h & 0x80000000 else h


java_hash = accelerate(java_hash)


@lru_cache(maxsize=4096)
def tags_code(tags: str | None) -> int:
    """The tag hash code stored in consume queues; 0 for a message without tags. Cached:
    a topic's messages share a handful of tags."""
    return java_hash(tags) if tags else 0


# -- hosts and message ids ------------------------------------------------------------------

_PORT = struct.Struct(">i")


def host_bytes(addr: str) -> bytes:
    """'ip:port' as RocketMQ stores a host: 4 (or 16) address bytes + the port as an int."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.inet_pton(family, host) + _PORT.pack(int(port))


def host_text(data: bytes | memoryview) -> str:
    ip = bytes(data[:-4])
    (port,) = _PORT.unpack(bytes(data[-4:]))
    if len(ip) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, ip)}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, ip)}]:{port}"


def offset_msg_id(store_host: bytes, commit_log_offset: int) -> str:
    """The id a broker hands out for a stored message: store host + port + physical offset,
    uppercase hex (32 characters for IPv4, 56 for IPv6)."""
    return (store_host + commit_log_offset.to_bytes(8, "big")).hex().upper()


def offset_msg_ids(store_host: bytes, commit_log_offset: int, sizes: list[int]) -> list[str]:
    """The offset ids of records laid end to end from `commit_log_offset` (a batch put)."""
    ids = []
    for size in sizes:
        ids.append(offset_msg_id(store_host, commit_log_offset))
        commit_log_offset += size
    return ids


offset_msg_ids = accelerate(offset_msg_ids)


def decode_offset_msg_id(msg_id: str) -> tuple[str, int]:
    """('ip:port', commit log offset) from an offset message id."""
    if len(msg_id) not in (32, 56):
        raise ValueError(f"{msg_id!r} is not an offset message id (32 or 56 hex digits)")
    try:
        raw = bytes.fromhex(msg_id)
    except ValueError:
        raise ValueError(f"{msg_id!r} is not an offset message id (not hex)") from None
    return host_text(raw[:-8]), int.from_bytes(raw[-8:], "big")


class UniqueIdGenerator:
    """Client-side message ids (UNIQ_KEY) in MessageClientIDSetter's layout: IPv4 (4 bytes),
    pid (2), a per-process int (4), ms since the start of the month (4), counter (2)."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        try:
            addr = socket.inet_aton(ip)
        except OSError:
            addr = b"\x7f\x00\x00\x01"
        self._prefix = addr + struct.pack(">hi", os.getpid() & 0x7FFF, id(self) & 0x7FFFFFFF)
        self._counter = 0
        self._lock = threading.Lock()
        self._month_start = 0.0
        self._next_month = 0.0

    def _roll_month(self, now: float) -> None:
        t = time.localtime(now)
        start = time.mktime((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, -1))
        nxt = time.mktime((t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1, 1, 0, 0, 0, 0, 0, -1))
        self._month_start, self._next_month = start, nxt

    def next(self) -> str:
        now = time.time()
        with self._lock:
            if now >= self._next_month:
                self._roll_month(now)
            self._counter = (self._counter + 1) & 0xFFFF
            counter = self._counter
        elapsed = int((now - self._month_start) * 1000) & 0xFFFFFFFF
        return (self._prefix + struct.pack(">IH", elapsed, counter)).hex().upper()


# -- compression ----------------------------------------------------------------------------

class CompressionError(ValueError):
    """A compressed body that cannot be inflated (or a codec we do not have)."""


def decompress(body: bytes, sys_flag: int) -> bytes:
    """The body as the producer wrote it. Type bits 0 (old clients) and ZLIB mean zlib; LZ4
    is the frame format of RocketMQ 5.x's Lz4Compressor."""
    if not sys_flag & COMPRESSED_FLAG:
        return body
    kind = sys_flag & COMPRESSION_MASK
    try:
        if kind == COMPRESSION_ZSTD:
            return zstandard.ZstdDecompressor().decompressobj().decompress(body)
        if kind == COMPRESSION_LZ4:
            return lz4frame.decompress(body)
        return zlib.decompress(body)
    except (zlib.error, zstandard.ZstdError, lz4frame.LZ4Error) as exc:
        raise CompressionError(f"compressed body does not inflate: {exc}") from None


def compress(body: bytes, kind: str = "zlib", level: int | None = None) -> tuple[bytes, int]:
    """(compressed body, sys flag bits to OR in) for 'zlib' (level 5 as Java), 'zstd' or
    'lz4' (a frame, as RocketMQ 5.x writes; 4.x consumers only inflate zlib)."""
    if kind == "lz4":
        return lz4frame.compress(body), COMPRESSED_FLAG | COMPRESSION_LZ4
    if kind == "zstd":
        data = zstandard.ZstdCompressor(level=level or 3).compress(body)
        return data, COMPRESSED_FLAG | COMPRESSION_ZSTD
    if kind == "zlib":
        return zlib.compress(body, 5 if level is None else level), COMPRESSED_FLAG | COMPRESSION_ZLIB
    raise ValueError(f"unknown compression {kind!r} (zlib, zstd or lz4)")


# -- batch bodies ---------------------------------------------------------------------------

_BATCH_HEAD = struct.Struct(">iiiii")  # total size, magic, body crc, flag, body length
_SHORT = struct.Struct(">h")


@dataclass(slots=True)
class BatchEntry:
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    raw_properties: str = ""  # as the producer wrote them: a Java broker stores these bytes


def encode_batch(entries: list[BatchEntry]) -> bytes:
    """A SEND_BATCH_MESSAGE body: each entry is size, magic 0, crc 0, flag, body, properties."""
    out = bytearray()
    for e in entries:
        props = encode_properties(e.properties).encode()
        out += _BATCH_HEAD.pack(22 + len(e.body) + len(props), 0, 0, e.flag, len(e.body))
        out += e.body + _SHORT.pack(len(props)) + props
    return bytes(out)


def decode_batch(data: bytes) -> list[BatchEntry]:
    entries = []
    pos, n = 0, len(data)
    while pos < n:
        if n - pos < _BATCH_HEAD.size:
            raise ValueError(f"batch entry at {pos} is truncated")
        total, _magic, _crc, flag, body_len = _BATCH_HEAD.unpack_from(data, pos)
        end = pos + total
        body_start = pos + _BATCH_HEAD.size
        if total < 22 or end > n or body_len < 0 or body_start + body_len + 2 > end:
            raise ValueError(f"batch entry at {pos} has inconsistent sizes")
        body = data[body_start:body_start + body_len]
        (props_len,) = _SHORT.unpack_from(data, body_start + body_len)
        props_start = body_start + body_len + 2
        if props_start + props_len != end:
            raise ValueError(f"batch entry at {pos} has inconsistent sizes")
        raw = data[props_start:end].decode("utf-8")
        entries.append(BatchEntry(body, decode_properties(raw), flag, raw))
        pos = end
    return entries


decode_batch = accelerate(decode_batch, BatchEntry=BatchEntry)


def batch_messages(data: bytes, template: object, shared: dict[str, str], tail: str) -> list:
    """The messages of a batch body as the store takes them, as MessageExtBatchEncoder writes
    them: each a copy of `template` (a slots dataclass: store.Message) with its entry's body
    and flag; its properties the entry's, `shared` (the header's) winning where a key repeats,
    POP_CK dropped (a re-sent popped message must not look revived); its properties string
    the entry's as the producer wrote it, then (after a separator if it lacks one) `tail`,
    the header's. Per batch, not per message: the accelerator makes the copies without a
    BatchEntry or an __init__ call each. Raises decode_batch's ValueError."""
    glued = PROPERTY_SEPARATOR + tail
    messages = []
    for entry in decode_batch(data):
        props = entry.properties
        props |= shared
        props.pop(POP_CK, None)
        raw = entry.raw_properties
        messages.append(replace(  # type: ignore[type-var]
            template, body=entry.body, properties=props, flag=entry.flag,
            properties_string=raw + glued if raw and raw[-1] != PROPERTY_SEPARATOR
            else raw + tail))
    return messages


batch_messages = accelerate(batch_messages)


# -- a stored message -----------------------------------------------------------------------

@dataclass(slots=True)
class MessageExt:
    """A message as stored and delivered (MessageExt), with RocketMQ's field names."""

    topic: str
    queue_id: int
    queue_offset: int
    commit_log_offset: int
    store_size: int
    body_crc: int
    flag: int
    sys_flag: int
    born_timestamp: int
    born_host: bytes
    store_timestamp: int
    store_host: bytes
    reconsume_times: int
    prepared_transaction_offset: int
    body: bytes
    properties: dict[str, str]
    properties_text: str = ""
    magic: int = 0

    @property
    def tags(self) -> str | None:
        return self.properties.get(TAGS)

    @property
    def keys(self) -> list[str]:
        return [k for k in self.properties.get(KEYS, "").split(" ") if k]

    @property
    def msg_id(self) -> str:
        """What clients call the message id: the producer's UNIQ_KEY, else the offset id."""
        return self.properties.get(UNIQ_KEY) or self.offset_msg_id

    @property
    def offset_msg_id(self) -> str:
        return offset_msg_id(self.store_host, self.commit_log_offset)

    @property
    def born_host_text(self) -> str:
        return host_text(self.born_host)

    @property
    def store_host_text(self) -> str:
        return host_text(self.store_host)

    def body_inflated(self) -> bytes:
        return decompress(self.body, self.sys_flag)
