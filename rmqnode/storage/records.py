"""RocketMQ's store formats, byte for byte and without IO: CommitLog records, ConsumeQueue
entries, IndexFile header/slots/entries, and the checkpoint.

Java RocketMQ must read what we write and we must read what it writes, so every layout here is
checked against a store written by a real 4.9.8 broker (tests/test_store_*).
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

from rmqnode.message import (BORNHOST_V6_FLAG, STOREHOST_V6_FLAG, MessageExt, decode_properties,
                             java_hash)
from rmqnode.speedups import accelerate
from rmqnode.storage.javamap import properties_string
from rmqnode.validation import INT32, INT64

MESSAGE_MAGIC_V1 = -626843481  # 0xDAA320A7: topic length in 1 byte
MESSAGE_MAGIC_V2 = -626843477  # 0xDAA320AB: topic length in 2 bytes
BLANK_MAGIC = -875286124       # 0xCBD43194: end of file, the rest is unused
END_FILE_MIN_BLANK_LENGTH = 8  # a file always keeps room for the blank marker

# Fixed positions shared by every record variant: the broker patches them at append time.
POS_QUEUE_OFFSET = 20
POS_PHYSICAL_OFFSET = 28
POS_SYS_FLAG = 36
POS_BORN_HOST = 48
assert POS_PHYSICAL_OFFSET == POS_QUEUE_OFFSET + 8  # stamp_records writes both at once

_HEAD = struct.Struct(">iiiiiqqiq")      # size, magic, crc, queue, flag, qoff, phys, sysflag, born
_V4_HOSTS = struct.Struct(">8sq8siq")    # born host, store ts, store host, reconsume, prepared
# Everything up to the body of a record with IPv4 hosts, in one pack: the hot path.
_V4_FIXED = struct.Struct(">iiiiiqqiq8sq8siqi")
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_SHORT = struct.Struct(">h")
_SIZE_MAGIC = struct.Struct(">ii")
_OFFSETS = struct.Struct(">qq")  # queue offset, then physical offset: adjacent in a record

# The PutMessageStatus names of a message no record can hold.
MESSAGE_ILLEGAL = "MESSAGE_ILLEGAL"
PROPERTIES_SIZE_EXCEEDED = "PROPERTIES_SIZE_EXCEEDED"


class CorruptRecord(ValueError):
    """A CommitLog record that does not decode; carries where it is and why."""

    def __init__(self, offset: int, reason: str, file: str | None = None) -> None:
        where = f"{file} " if file else ""
        super().__init__(f"{where}offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.file = file


def body_crc(body: bytes | memoryview) -> int:
    """UtilAll.crc32: CRC32 of the body as a non-negative int."""
    return zlib.crc32(body) & 0x7FFFFFFF


def record_size(body_len: int, topic_len: int, props_len: int, sys_flag: int = 0,
                topic_v2: bool = False) -> int:
    born = 20 if sys_flag & BORNHOST_V6_FLAG else 8
    store = 20 if sys_flag & STOREHOST_V6_FLAG else 8
    return 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + born + 8 + store + 4 + 8 + 4 + body_len \
        + (2 if topic_v2 else 1) + topic_len + 2 + props_len


def encode_record(*, topic: str, queue_id: int, flag: int, body: bytes, properties: str,
                  sys_flag: int, born_timestamp: int, born_host: bytes, store_timestamp: int,
                  store_host: bytes, reconsume_times: int = 0, prepared_transaction_offset: int = 0,
                  queue_offset: int = 0, physical_offset: int = 0,
                  crc: int | None = None) -> bytearray:
    """One CommitLog record. Hosts are RocketMQ's 8- or 20-byte forms (message.host_bytes);
    the IPv6 sys flag bits are derived from them, never taken from `sys_flag`. Topics over
    127 bytes use the v2 magic."""
    topic_b = topic.encode()
    props_b = properties.encode()
    # The host bits describe the layout written here, whatever a caller passed in them: a
    # flag that disagreed with the hosts' lengths would make the record unreadable.
    sys_flag &= ~(BORNHOST_V6_FLAG | STOREHOST_V6_FLAG)
    if len(born_host) == 20:
        sys_flag |= BORNHOST_V6_FLAG
    if len(store_host) == 20:
        sys_flag |= STOREHOST_V6_FLAG
    v2 = len(topic_b) > 127
    size = record_size(len(body), len(topic_b), len(props_b), sys_flag, v2)
    if len(props_b) > 32767:
        raise ValueError(f"properties of {len(props_b)} bytes exceed 32767")
    if not v2 and len(born_host) == 8 and len(store_host) == 8:
        out = bytearray(_V4_FIXED.pack(
            size, MESSAGE_MAGIC_V1, body_crc(body) if crc is None else crc, queue_id, flag,
            queue_offset, physical_offset, sys_flag, born_timestamp, born_host,
            store_timestamp, store_host, reconsume_times, prepared_transaction_offset,
            len(body)))
        out += body
        out.append(len(topic_b))
        out += topic_b
        out += _SHORT.pack(len(props_b))
        out += props_b
        return out
    out = bytearray(size)
    _HEAD.pack_into(out, 0, size, MESSAGE_MAGIC_V2 if v2 else MESSAGE_MAGIC_V1,
                    body_crc(body) if crc is None else crc, queue_id, flag, queue_offset,
                    physical_offset, sys_flag, born_timestamp)
    pos = POS_BORN_HOST
    out[pos:pos + len(born_host)] = born_host
    pos += len(born_host)
    _LONG.pack_into(out, pos, store_timestamp)
    pos += 8
    out[pos:pos + len(store_host)] = store_host
    pos += len(store_host)
    struct.pack_into(">iqi", out, pos, reconsume_times, prepared_transaction_offset, len(body))
    pos += 16
    out[pos:pos + len(body)] = body
    pos += len(body)
    if v2:
        _SHORT.pack_into(out, pos, len(topic_b))
        pos += 2
    else:
        out[pos] = len(topic_b)
        pos += 1
    out[pos:pos + len(topic_b)] = topic_b
    pos += len(topic_b)
    _SHORT.pack_into(out, pos, len(props_b))
    out[pos + 2:] = props_b
    return out


encode_record = accelerate(encode_record)


class RecordRefused(ValueError):
    """A message no CommitLog record can hold; `status` is the PutMessageStatus the store
    answers it with."""

    def __init__(self, status: str, remark: str) -> None:
        super().__init__(remark)
        self.status = status
        self.remark = remark


def encode_messages(messages: list, store_host: bytes, max_body: int
                    ) -> tuple[bytearray, list[int]]:
    """The records of a put (store.Message objects: one, or a batch) laid end to end, and
    their sizes, with store time and offsets left 0 for the append to patch in (see
    stamp_records). One call per put: the accelerator encodes a whole batch in C.

    Raises RecordRefused for the first message that cannot be stored: a body over
    `max_body`, a topic over 127 bytes, a field out of its int range, properties over
    32767 bytes. A message's properties are its `properties_string`, or when that is None
    its `properties` as Java's HashMap writes them."""
    out = bytearray()
    sizes = []
    lo, hi = INT32
    for msg in messages:
        if len(msg.body) > max_body:
            raise RecordRefused(MESSAGE_ILLEGAL, f"message body size {len(msg.body)} "
                                f"exceeds maxMessageSize {max_body}")
        if len(msg.topic.encode()) > 127:
            raise RecordRefused(MESSAGE_ILLEGAL, "topic length exceeds 127")
        if not (lo <= msg.queue_id <= hi and lo <= msg.flag <= hi and lo <= msg.sys_flag <= hi
                and lo <= msg.reconsume_times <= hi
                and INT64[0] <= msg.born_timestamp <= INT64[1]
                and INT64[0] <= msg.prepared_transaction_offset <= INT64[1]):
            raise RecordRefused(MESSAGE_ILLEGAL, "a field does not fit the record (queueId, "
                                "flag, sysFlag and reconsumeTimes are int32, times are int64)")
        stored = msg.properties_string
        try:
            record = encode_record(
                topic=msg.topic, queue_id=msg.queue_id, flag=msg.flag, body=msg.body,
                properties=properties_string(msg.properties) if stored is None else stored,
                sys_flag=msg.sys_flag, born_timestamp=msg.born_timestamp,
                born_host=msg.born_host, store_timestamp=0, store_host=store_host,
                reconsume_times=msg.reconsume_times,
                prepared_transaction_offset=msg.prepared_transaction_offset)
        except ValueError as exc:  # its one refusal: properties past 32767 bytes
            raise RecordRefused(PROPERTIES_SIZE_EXCEEDED, str(exc)) from None
        sizes.append(len(record))
        out += record
    return out, sizes


encode_messages = accelerate(encode_messages)


def stamp_records(records: bytearray, sizes: list[int], queue_offset: int,
                  physical_offset: int, store_timestamp: int) -> None:
    """What the append knows only once it has placed `records` (laid end to end, `sizes`
    long) at `physical_offset`: each one's queue offset (consecutive from `queue_offset`),
    physical offset and store time, patched in."""
    pos = 0
    for i, size in enumerate(sizes):
        _OFFSETS.pack_into(records, pos + POS_QUEUE_OFFSET, queue_offset + i,
                           physical_offset + pos)
        (sys_flag,) = _INT.unpack_from(records, pos + POS_SYS_FLAG)
        _LONG.pack_into(records, pos + store_timestamp_pos(sys_flag), store_timestamp)
        pos += size


stamp_records = accelerate(stamp_records)


def record_fields(msg: MessageExt) -> dict[str, object]:
    """A decoded record's fields as encode_record takes them (`properties` as text)."""
    return dict(
        topic=msg.topic, queue_id=msg.queue_id, flag=msg.flag, body=msg.body,
        properties=msg.properties_text, sys_flag=msg.sys_flag,
        born_timestamp=msg.born_timestamp, born_host=msg.born_host,
        store_timestamp=msg.store_timestamp, store_host=msg.store_host,
        reconsume_times=msg.reconsume_times,
        prepared_transaction_offset=msg.prepared_transaction_offset,
        queue_offset=msg.queue_offset, physical_offset=msg.commit_log_offset)


def reencode(msg: MessageExt, **changes: object) -> bytearray:
    """A decoded record encoded again with some fields changed (`properties` as text): what
    a broker sends when it delivers a stored message under another topic or with more
    properties (transaction check-back, revived POP messages)."""
    return encode_record(**(record_fields(msg) | changes))  # type: ignore[arg-type]


def store_timestamp_pos(sys_flag: int) -> int:
    return POS_BORN_HOST + (20 if sys_flag & BORNHOST_V6_FLAG else 8)


def encode_blank(size: int) -> bytes:
    """The end-of-file marker: only its size and magic are written, as Java does."""
    return _SIZE_MAGIC.pack(size, BLANK_MAGIC)


@dataclass(slots=True)
class Blank:
    """The end-of-file record: `size` bytes up to the end of the file are unused."""
    size: int


def peek(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(total size, magic) of the record at pos; (0, 0) where nothing was ever written."""
    if len(buf) - pos < 8:
        return 0, 0
    return _SIZE_MAGIC.unpack_from(buf, pos)


def check_record(buf: bytes | memoryview, pos: int, base_offset: int = 0,
                 check_crc: bool = False) -> tuple[int, int]:
    """(total size, store timestamp) of the record at `pos`, checked without decoding it:
    recovery walks whole CommitLog files with this. (0, 0) where nothing was written; the
    blank end-of-file record gives (its size, -1).

    Raises CorruptRecord for anything that is not a complete, consistent record (with the
    body CRC when `check_crc`); `base_offset` is the global offset of buf[0], for the message.
    """
    where = base_offset + pos
    size, magic = peek(buf, pos)
    if size == 0 and magic == 0:
        return 0, 0
    if magic == BLANK_MAGIC:
        return size, -1
    if magic not in (MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2):
        raise CorruptRecord(where, f"bad magic code {magic & 0xFFFFFFFF:#010x}")
    if size < 91 or pos + size > len(buf):
        raise CorruptRecord(where, f"total size {size} does not fit "
                                   f"({len(buf) - pos} bytes left)")
    try:
        (sys_flag,) = _INT.unpack_from(buf, pos + POS_SYS_FLAG)
        p = pos + POS_BORN_HOST + (20 if sys_flag & BORNHOST_V6_FLAG else 8)
        (store_ts,) = _LONG.unpack_from(buf, p)
        p += 8 + (20 if sys_flag & STOREHOST_V6_FLAG else 8) + 12
        (body_len,) = _INT.unpack_from(buf, p)
        p += 4
        if body_len < 0 or p + body_len > pos + size:
            raise CorruptRecord(where, f"body length {body_len} overruns the record")
        body_at = p
        p += body_len
        if magic == MESSAGE_MAGIC_V2:
            (topic_len,) = _SHORT.unpack_from(buf, p)
            p += 2 + topic_len
        else:
            p += 1 + buf[p]
        (props_len,) = _SHORT.unpack_from(buf, p)
        p += 2 + max(props_len, 0)
    except (struct.error, IndexError):
        raise CorruptRecord(where, "record is truncated") from None
    if p != pos + size:
        raise CorruptRecord(where, f"fields add up to {p - pos} bytes, total size says {size}")
    if check_crc:
        (crc,) = _INT.unpack_from(buf, pos + 8)
        actual = body_crc(memoryview(buf)[body_at:body_at + body_len])
        if actual != crc:
            raise CorruptRecord(where, f"body CRC {actual} does not match stored {crc}")
    return size, store_ts


def decode_record(buf: bytes | memoryview, pos: int, base_offset: int = 0,
                  check_crc: bool = False, read_body: bool = True) -> MessageExt | Blank | None:
    """The record at `pos`; None where nothing was written (a zero size).

    `base_offset` is the global offset of buf[0], used only to say where a corrupt record is.
    Raises CorruptRecord for anything that is not a complete, consistent record.
    """
    size, _ = check_record(buf, pos, base_offset, check_crc)
    if size == 0:
        return None
    magic = _SIZE_MAGIC.unpack_from(buf, pos)[1]
    if magic == BLANK_MAGIC:
        return Blank(size)
    (_, _, crc, queue_id, flag, queue_offset, physical_offset, sys_flag,
     born_ts) = _HEAD.unpack_from(buf, pos)
    p = pos + _HEAD.size
    if not sys_flag & (BORNHOST_V6_FLAG | STOREHOST_V6_FLAG):
        born_host, store_ts, store_host, reconsume, prepared = _V4_HOSTS.unpack_from(buf, p)
        p += _V4_HOSTS.size
    else:
        n = 20 if sys_flag & BORNHOST_V6_FLAG else 8
        born_host = bytes(buf[p:p + n])
        p += n
        (store_ts,) = _LONG.unpack_from(buf, p)
        p += 8
        n = 20 if sys_flag & STOREHOST_V6_FLAG else 8
        store_host = bytes(buf[p:p + n])
        p += n
        reconsume, prepared = struct.unpack_from(">iq", buf, p)
        p += 12
    (body_len,) = _INT.unpack_from(buf, p)
    p += 4
    body = bytes(buf[p:p + body_len]) if read_body else b""
    p += body_len
    if magic == MESSAGE_MAGIC_V2:
        (topic_len,) = _SHORT.unpack_from(buf, p)
        p += 2
    else:
        topic_len = buf[p]
        p += 1
    try:
        topic = bytes(buf[p:p + topic_len]).decode()
        p += topic_len
        (props_len,) = _SHORT.unpack_from(buf, p)
        p += 2
        props_text = bytes(buf[p:p + props_len]).decode() if props_len > 0 else ""
    except UnicodeDecodeError:
        raise CorruptRecord(base_offset + pos, "topic or properties are not UTF-8") from None
    return MessageExt(topic=topic, queue_id=queue_id, queue_offset=queue_offset,
                      commit_log_offset=physical_offset, store_size=size, body_crc=crc,
                      flag=flag, sys_flag=sys_flag, born_timestamp=born_ts, born_host=born_host,
                      store_timestamp=store_ts, store_host=store_host, reconsume_times=reconsume,
                      prepared_transaction_offset=prepared, body=body,
                      properties=decode_properties(props_text), properties_text=props_text,
                      magic=magic)


# -- ConsumeQueue ---------------------------------------------------------------------------

CQ_ENTRY = struct.Struct(">qiq")  # commit log offset, size, tags code
CQ_UNIT_SIZE = CQ_ENTRY.size      # 20


# -- IndexFile ------------------------------------------------------------------------------

INDEX_HEADER = struct.Struct(">qqqqii")  # begin/end timestamp, begin/end phy offset, slots, count
INDEX_SLOT = struct.Struct(">i")
INDEX_ENTRY = struct.Struct(">iqii")     # key hash, phy offset, time diff (s), previous index
INDEX_HEADER_SIZE = INDEX_HEADER.size    # 40
INDEX_SLOT_SIZE = 4
INDEX_ENTRY_SIZE = INDEX_ENTRY.size      # 20


def index_file_size(slots: int, entries: int) -> int:
    return INDEX_HEADER_SIZE + slots * INDEX_SLOT_SIZE + entries * INDEX_ENTRY_SIZE


def index_key_hash(key: str) -> int:
    """IndexFile.indexKeyHashMethod: |hashCode|, with Integer.MIN_VALUE mapped to 0."""
    h = abs(java_hash(key))
    return 0 if h > 0x7FFFFFFF else h


def index_key(topic: str, key: str) -> str:
    return f"{topic}#{key}"


def index_slot_pos(key_hash: int, slots: int) -> int:
    return INDEX_HEADER_SIZE + (key_hash % slots) * INDEX_SLOT_SIZE


def index_entry_pos(index: int, slots: int) -> int:
    return INDEX_HEADER_SIZE + slots * INDEX_SLOT_SIZE + index * INDEX_ENTRY_SIZE


def index_put(buf: bytearray | memoryview, slots: int, count: int, limit: int,
              begin_timestamp: int, topic: str, keys: list[str], offsets: list[int],
              store_timestamp: int) -> int:
    """Index entries of `topic#key` for `keys`, each pointing at its message's commit log
    offset in `offsets` and stored at `store_timestamp`, written into the IndexFile bytes
    `buf` from entry `count` on while the count is below `limit`: the count after them.
    Each entry links to the one its hash slot held, and takes the slot over."""
    diff = min(max(0, (store_timestamp - begin_timestamp) // 1000), 0x7FFFFFFF)
    for key, phy_offset in zip(keys, offsets):
        if count >= limit:
            break
        h = index_key_hash(index_key(topic, key))
        slot_pos = index_slot_pos(h, slots)
        (prev,) = INDEX_SLOT.unpack_from(buf, slot_pos)
        if prev <= 0 or prev > count:
            prev = 0
        INDEX_ENTRY.pack_into(buf, index_entry_pos(count, slots), h, phy_offset, diff, prev)
        INDEX_SLOT.pack_into(buf, slot_pos, count)
        count += 1
    return count


index_put = accelerate(index_put)


def index_file_name(timestamp_ms: int) -> str:
    """yyyyMMddHHmmssSSS in local time (UtilAll.timeMillisToHumanString)."""
    t = time.localtime(timestamp_ms / 1000)
    return time.strftime("%Y%m%d%H%M%S", t) + f"{timestamp_ms % 1000:03d}"


# -- StoreCheckpoint ------------------------------------------------------------------------

CHECKPOINT = struct.Struct(">qqq")  # physicMsgTimestamp, logicsMsgTimestamp, indexMsgTimestamp
CHECKPOINT_FILE_SIZE = 4096


@dataclass(slots=True)
class Checkpoint:
    physic_msg_timestamp: int = 0
    logics_msg_timestamp: int = 0
    index_msg_timestamp: int = 0

    def pack(self) -> bytes:
        return CHECKPOINT.pack(self.physic_msg_timestamp, self.logics_msg_timestamp,
                               self.index_msg_timestamp)

    @classmethod
    def unpack(cls, data: bytes) -> Checkpoint:
        if len(data) < CHECKPOINT.size:
            return cls()
        return cls(*CHECKPOINT.unpack_from(data, 0))

    def min_timestamp(self, index_safe: bool = False) -> int:
        """Where recovery after a crash may start: 3 s before the oldest flushed point."""
        low = min(self.physic_msg_timestamp, self.logics_msg_timestamp)
        if index_safe:
            low = min(low, self.index_msg_timestamp)
        return max(low - 3000, 0)
